"""The built-in tiny LLaVA: its backbone (``backbone``), the model and tokenizer (``model``), the cached
caption pretraining (``pretrain``), the vision tower's label pretraining (``vision_pretrain``) and
the training loop both use (``fit``)."""
