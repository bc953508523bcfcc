"""coin: continual instruction tuning of multimodal LLMs (the CoIN benchmark)."""

__version__ = "0.1.0"
DISTRIBUTION = "coin-cl"  # the name pip knows (PyPI's "coin" is an unrelated package); import name and command: coin


def install_hint(extra: str) -> str:
    """The pip command that installs coin's optional ``extra`` (``pip install 'coin-cl[wandb]'``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
