"""The model layer's user errors: a part or folder that cannot be loaded, named with the file at fault.

``PartsError`` (and its kinds: a missing part, an unusable tokenizer folder) maps to exit code 2 in
``coin.cli``: the user's to fix, nothing was trained.
"""

from __future__ import annotations


class PartsError(ValueError):
    """A part that cannot be assembled; the message names the file (and key) at fault."""


class MissingPartError(PartsError, FileNotFoundError):
    """A part's folder or file does not exist."""
