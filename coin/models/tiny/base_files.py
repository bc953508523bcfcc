"""The tiny base shipped inside the package: where it is and whether it may be used (``coin.models.tiny.ship`` makes it).

``FOLDER`` holds the weights (safetensors), tokenizer and processor, and ``SHIPPED.json``: the recipe's
cache key, every file's sha256, the first steps' loss curve, the machine and the command that made it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "base"
RECORD = "SHIPPED.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record() -> dict | None:
    """The shipped base's ``SHIPPED.json`` (None when the package ships none)."""
    path = FOLDER / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def shipped_base(key: str) -> Path | None:
    """The shipped base's folder when it was made by the recipe ``key``; None otherwise.

    Raises ``ValueError`` naming the file when a shipped file's sha256 differs from the record
    (a damaged install must not train silently from other weights).
    """
    rec = record()
    if rec is None or rec.get("key") != key:
        return None
    for name, digest in rec["sha256"].items():
        path = FOLDER / name
        if not path.is_file() or _sha256(path) != digest:
            raise ValueError(f"the shipped tiny base's {path} is missing or differs from its sha256 in "
                             f"{FOLDER / RECORD}; reinstall coin, or pretrain it with coin model prepare")
    return FOLDER
