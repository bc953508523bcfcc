"""Loading a model's parts from their folders, each refused with a message naming the part and what is wrong
(a missing folder or file, missing or mis-shaped weights), shared by the backbones assembled from parts."""

from __future__ import annotations

from pathlib import Path

from coin.errors import MissingPartError, PartsError


def check_folder(path, what: str, files: tuple[str, ...]) -> Path:
    """The folder ``path``, refused (``MissingPartError``) when missing or without one of ``files``."""
    if path is None:
        raise MissingPartError(f"no {what} folder given")
    path = Path(path)
    if not path.is_dir():
        raise MissingPartError(f"{what} folder {path} does not exist")
    for name in files:
        if not (path / name).is_file():
            raise MissingPartError(f"{what} folder {path} has no {name}")
    return path


def load_part(cls, path: Path, what: str, **kwargs):
    """``cls.from_pretrained`` that refuses a part with missing or mis-shaped weights (which
    ``from_pretrained`` would fill at random with only a warning)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would list, e.g., a CLIPModel's whole text tower
    try:
        model, info = cls.from_pretrained(str(path), output_loading_info=True, ignore_mismatched_sizes=True,
                                          **kwargs)  # mismatches come back in info, named, instead of raising
    except (OSError, RuntimeError, ValueError) as e:  # unreadable weights, wrong shapes
        raise PartsError(f"{what} folder {path} cannot be loaded: {e}") from None
    finally:
        hf_logging.set_verbosity(level)
    lines = [f"missing weight {k!r}" for k in sorted(info.get("missing_keys") or [])]
    for k in info.get("mismatched_keys") or []:  # (key, shape in the checkpoint, shape in the model)
        if isinstance(k, str) or len(k) != 3:
            lines.append(f"weight {k if isinstance(k, str) else k[0]!r} has the wrong shape")
        else:
            lines.append(f"weight {k[0]!r} has shape {tuple(k[1])} in the checkpoint, {tuple(k[2])} in the model")
    if lines:
        raise PartsError(f"{what} folder {path}: " + "; ".join(lines[:10]) + (" ..." if len(lines) > 10 else ""))
    return model
