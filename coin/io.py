"""Atomic file writes and small JSON helpers.

Everything a run writes goes through here: a temp file in the same folder, flushed and
fsynced, then renamed over the target. A kill at any moment leaves either the old file
or the new one, never half of one that later reads as complete.

Every file written here is valid JSON (RFC 8259 has no NaN or Infinity): a non-finite float
(a NaN loss, an infinite gradient norm) is written as ``null`` and its key path is recorded
beside it, in a ``"nonfinite"`` list of the mapping written (``{"final_loss": null, ...,
"nonfinite": ["final_loss"]}``); for a list of mappings (a file of records, a JSONL row) each
mapping records its own. A non-finite number in no mapping (a bare list of numbers) is written
as ``null`` with nothing to record it in. ``json.dumps`` then runs with ``allow_nan=False``, so a
NaN that slipped past the sanitiser raises instead of writing a file no other tool can read.

Reading is strict about encodings and names the file in every error (``FileFormatError``, a
``ValueError``): a UTF-8 byte-order mark is accepted and dropped; UTF-16/32 (a BOM or NUL bytes)
is named (``FILE: not UTF-8 (looks like UTF-16); re-save as UTF-8``); any other undecodable byte
is located (``FILE: not valid UTF-8 at byte N``); JSON nested past Python's recursion limit is
``FILE: JSON nested too deeply``, not a ``RecursionError``. Reading accepts the ``NaN`` and
``Infinity`` literals older coin versions wrote.
"""

from __future__ import annotations

import codecs
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from coin.errors import FileFormatError, WriteError

NONFINITE_KEY = "nonfinite"  # where a written mapping lists the key paths of its non-finite numbers


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


# errors of a write that the user can fix: a full disk or quota, a folder they may not write, a read-only mount
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def write_error(e: BaseException, path: str | os.PathLike | None = None) -> WriteError | None:
    """``e`` as a ``WriteError`` naming ``path`` (default: the file the error names) when it is a write
    error the user can fix (``_WRITE_ERRNOS``) and a file is known; else None."""
    if isinstance(e, WriteError):
        return e
    if not isinstance(e, OSError) or e.errno not in _WRITE_ERRNOS:
        return None
    name = path if path is not None else e.filename
    return WriteError(e.errno, e.strerror or os.strerror(e.errno), os.fspath(name)) if name is not None else None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-folder temp file, fsync, rename). A full disk or an
    unwritable folder is a ``WriteError`` naming ``path``; the temp file is removed, the old file kept."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise (write_error(e, path) or e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and (w := write_error(e, path)) is not None:
            raise w from e
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _nulled(obj: Any, path: str, found: list[str]) -> Any:
    """``obj`` with each non-finite float replaced by None, its key path (``a.b[2]``) appended to ``found``."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        found.append(path or "$")
        return None
    if isinstance(obj, dict):
        return {k: _nulled(v, f"{path}.{k}" if path else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulled(v, f"{path}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def _flagged(obj: dict) -> dict:
    """A mapping with its non-finite numbers nulled and their key paths listed under ``NONFINITE_KEY``."""
    found: list[str] = []
    out = _nulled(obj, "", found)
    if found:
        old = out.get(NONFINITE_KEY)
        out[NONFINITE_KEY] = [*(old if isinstance(old, list) else [] if old is None else [old]), *found]
    return out


def finite_json(obj: Any) -> Any:
    """``obj`` ready for strict JSON: non-finite floats as None, recorded as the module docstring says."""
    if isinstance(obj, dict):
        return _flagged(obj)
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) if isinstance(v, dict) else _nulled(v, f"[{i}]", []) for i, v in enumerate(obj)]
    return _nulled(obj, "", [])


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (``finite_json`` first; ``allow_nan=False`` so a regression raises)."""
    return json.dumps(finite_json(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (non-finite numbers as null, flagged: see the module)."""
    return atomic_write_text(path, dumps_json(obj, indent) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write one JSON object per line to ``path`` atomically (each row flagged as ``atomic_write_json``)."""
    return atomic_write_text(path, "".join(dumps_json(r) + "\n" for r in rows))


def _utf16_without_bom(head: bytes) -> bool:
    """Mostly-ASCII text in UTF-16: NUL bytes on one parity of positions only, on at least a third of them."""
    even, odd = head[0::2].count(0), head[1::2].count(0)
    return bool(even + odd) and min(even, odd) == 0 and 3 * max(even, odd) >= len(head) // 2


def _decode(path: Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a UTF-8 BOM dropped); ``FileFormatError`` naming the file otherwise."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileFormatError(f"{path}: not UTF-8 (looks like UTF-32); re-save as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _utf16_without_bom(data[:4096]):
        raise FileFormatError(f"{path}: not UTF-8 (looks like UTF-16); re-save as UTF-8")
    if (nul := data.find(b"\0")) >= 0:  # never in UTF-8 text: a binary file
        raise FileFormatError(f"{path}: not UTF-8 text (a NUL byte at byte {nul}); is it the right file?")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{path}: not valid UTF-8 at byte {e.start + skip}; re-save as UTF-8") from None


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (a UTF-8 BOM accepted); ``FileFormatError`` naming the file for any other encoding."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as e:  # permission denied, an I/O error: the file named, not a traceback
        raise FileFormatError(f"{path}: cannot read ({e.strerror})") from None
    return _decode(path, data)


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise FileFormatError(f"{where}: JSON nested too deeply") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; every error (encoding, syntax, depth) is a ``FileFormatError`` naming the file."""
    path = Path(path)
    return _loads(read_text(path), str(path))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file; a bad line is a ``FileFormatError`` naming the file and line number."""
    rows = []
    for k, line in enumerate(read_text(path).split("\n"), 1):  # not splitlines: U+2028 may sit in a string
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FileFormatError(f"{path}:{k}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise FileFormatError(f"{path}:{k}: JSON nested too deeply") from None
    return rows


def publish_dir(tmp: str | os.PathLike, out: str | os.PathLike, marker: str) -> Path:
    """Move the folder ``tmp``, built aside, to ``out``, unless another process published a complete
    one first (``out/marker`` exists): then ``tmp`` is discarded and readers of ``out`` never see it
    vanish. An incomplete ``out`` (no marker) is replaced."""
    import shutil

    tmp, out = Path(tmp), Path(out)
    if (out / marker).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    if out.exists():
        shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:
        if not (out / marker).is_file():  # not a concurrent publish: a real error
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cache_dir() -> Path:
    """Where generated data and pretrained bases live (``$COIN_CACHE``, else ``~/.cache/coin``)."""
    return Path(os.environ.get("COIN_CACHE", Path.home() / ".cache" / "coin"))
