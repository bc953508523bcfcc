"""coin: continual instruction tuning of multimodal LLMs (the CoIN benchmark)."""

__version__ = "0.1.0"
