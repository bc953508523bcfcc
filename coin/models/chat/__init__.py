"""Models with a chat template: the ``hf`` and ``qwen2-vl`` backbones (``backbone``) and their wrapper
``ChatVLM`` (``wrapper``)."""
