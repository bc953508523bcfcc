"""LLaVA-1.5: the ``llava`` and ``llava-pretrain`` backbones (``backbone``), the wrapper ``LlavaVLM``
(``wrapper``, also the tiny model's), LLaVA's conversation encoding (``encode``) and its assembly from
the pretrain-only parts (``parts``)."""
