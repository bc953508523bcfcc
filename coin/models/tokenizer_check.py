"""A tokenizer folder checked before ``AutoTokenizer`` reads it, so a broken one is named in one line.

transformers 5 is lenient where a missing file should stop a run: a Vicuna or LLaMA-2 folder
whose ``tokenizer_config.json`` names ``LlamaTokenizer`` but lacks its ``tokenizer.model`` (and
has no ``tokenizer.json``) loads as a tokenizer of three special tokens, and a corrupt
``tokenizer.model``, or one read without sentencepiece or protobuf installed, is retried as a
tiktoken file and fails with "tiktoken is required". ``check_tokenizer_files`` asks the class
the folder declares which vocabulary files it reads (``vocab_files_names``) and checks them;
``load_tokenizer`` runs the check, loads, and refuses a tokenizer far smaller than the model.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from coin.errors import TokenizerError

REAL_EXTRA = 'pip install -e ".[real]" adds sentencepiece and protobuf'
MIN_TOKENS = 100  # fewer: the vocabulary file was not read (a Llama tokenizer without it has 3)
_PACKAGES = ("tiktoken", "sentencepiece", "protobuf")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a missing parent package ("google" for google.protobuf)
        return False


def _readable(path: Path) -> bool:
    """A non-empty file whose first byte can be read."""
    try:
        with path.open("rb") as f:
            return path.is_file() and len(f.read(1)) == 1
    except OSError:
        return False


def declared_class(folder: str | os.PathLike) -> str | None:
    """The ``tokenizer_class`` the folder's ``tokenizer_config.json`` names (None: no such file or key)."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.exists():
        return None
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError) as e:
        raise TokenizerError(f"tokenizer folder {folder}: tokenizer_config.json cannot be read ({e})") from None
    return name if isinstance(name, str) else None


def check_tokenizer_files(folder: str | os.PathLike) -> None:
    """Refuse (``TokenizerError``) a folder missing a file its declared tokenizer class reads.

    A readable ``tokenizer.json`` is enough (the fast tokenizer needs nothing else). Otherwise
    every file of the class's ``vocab_files_names`` must be a non-empty readable file, and a
    ``tokenizer.model`` must open as a sentencepiece model (which needs sentencepiece and, to
    convert it, protobuf). A folder that declares no class, or one transformers does not know
    (remote code such as Qwen-VL-Chat's), is left to ``AutoTokenizer``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TokenizerError(f"tokenizer folder {folder} does not exist")
    name = declared_class(folder)
    if name is None or _readable(folder / "tokenizer.json"):
        return
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    cls = tokenizer_class_from_name(name)
    if cls is None:
        return
    files = [f for key, f in (getattr(cls, "vocab_files_names", None) or {}).items() if key != "tokenizer_file"]
    for f in files:
        if not _readable(folder / f):
            state = "is empty or unreadable" if (folder / f).exists() else "is missing"
            raise TokenizerError(f"tokenizer folder {folder}: {f} {state} ({name} reads it, and there is no "
                                 "tokenizer.json to load instead); fetch the folder's tokenizer files again")
    if "tokenizer.model" in files:
        _check_sentencepiece(folder, folder / "tokenizer.model")


def _check_sentencepiece(folder: Path, path: Path) -> None:
    for package, module in (("sentencepiece", "sentencepiece"), ("protobuf", "google.protobuf")):
        if not _installed(module):
            raise TokenizerError(f"tokenizer folder {folder}: reading {path.name} needs the {package} package, "
                                 f"which is not installed; {REAL_EXTRA}")
    import sentencepiece

    try:
        sentencepiece.SentencePieceProcessor(model_file=str(path))
    except Exception as e:  # sentencepiece raises RuntimeError/OSError with a protobuf parse message
        raise TokenizerError(f"tokenizer folder {folder}: {path.name} is not a readable sentencepiece model "
                             f"(corrupt or truncated: {str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                             "fetch it again") from None


def _config_vocab_size(folder: Path) -> int | None:
    """``vocab_size`` of the folder's config.json (or of its ``text_config``), None without one."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    size = cfg.get("vocab_size", (cfg.get("text_config") or {}).get("vocab_size"))
    return size if isinstance(size, int) else None


def load_tokenizer(folder: str | os.PathLike, **kwargs):
    """``AutoTokenizer.from_pretrained(folder, **kwargs)`` after ``check_tokenizer_files``.

    An error that names a tokenizer package (tiktoken, sentencepiece, protobuf) becomes a
    ``TokenizerError`` naming the folder and its files; a tokenizer of under ``MIN_TOKENS``
    tokens for a model whose config.json counts more is refused (its vocabulary was not read).
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    check_tokenizer_files(folder)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except Exception as e:
        if not any(p in str(e).lower() for p in _PACKAGES):
            raise
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "none"
        raise TokenizerError(f"tokenizer folder {folder} cannot be loaded ({str(e).splitlines()[0]}); files present: "
                             f"{present}; {REAL_EXTRA}") from None
    expected = _config_vocab_size(folder)
    if len(tok) < MIN_TOKENS and expected is not None and expected >= MIN_TOKENS:
        present = ", ".join(sorted(p.name for p in folder.iterdir()))
        raise TokenizerError(f"tokenizer folder {folder}: the tokenizer loaded has {len(tok)} tokens but config.json's "
                             f"vocab_size is {expected}: its vocabulary file was not read (files present: {present})")
    return tok
