"""Opening a run's images: one helper, one pixel limit (``data.max_image_pixels``).

Every place that opens an image of a record goes through ``open_image``: the data check
(``coin.benchmarks.check``, before a run and in the header pass that overlaps model loading) and
the models' image loading (``coin.models.images.load_image``, MiniGPT-v2's image sizes). It
parses the header only (PIL decodes nothing until asked) and refuses an image whose header
declares more pixels than the limit, so a decompression bomb is named before its pixels are
allocated.

PIL has a limit of its own (``Image.MAX_IMAGE_PIXELS``: a warning above it, an error above
twice it), read from a module global; ``open_image`` turns it off for the moment of its own
``Image.open`` (under a lock, then restored) and applies the configured limit instead, so a limit
above PIL's is honoured and one below it is not overridden by PIL's warning.

The limit is per process: a run sets it from its config (``set_max_pixels``) before anything
reads an image; loader worker processes forked afterwards inherit it.
"""

from __future__ import annotations

import os
import stat
import threading
from contextlib import contextmanager
from typing import Iterator

from PIL import Image

from coin.errors import ImageTooLarge

__all__ = ["DEFAULT_MAX_PIXELS", "ImageTooLarge", "content_problem", "file_problem", "max_pixels",
           "open_image", "set_max_pixels", "too_large"]

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own error threshold (2 x its default Image.MAX_IMAGE_PIXELS)

_limit = DEFAULT_MAX_PIXELS
_pil_limit = threading.Lock()


def set_max_pixels(limit: int | None) -> None:
    """This process's limit (``data.max_image_pixels``; None: the default)."""
    global _limit
    _limit = DEFAULT_MAX_PIXELS if limit is None else int(limit)


def max_pixels() -> int:
    """This process's limit."""
    return _limit


@contextmanager
def _pil_check_off() -> Iterator[None]:
    with _pil_limit:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def too_large(size: tuple[int, int], limit: int | None = None) -> str | None:
    """``N pixels exceeds data.max_image_pixels=L: its header declares WxH`` when ``size`` is over the
    limit (default: this process's), else None."""
    limit = _limit if limit is None else limit
    n = size[0] * size[1]
    return f"{n} pixels exceeds data.max_image_pixels={limit}: its header declares {size[0]}x{size[1]}" \
        if n > limit else None


def open_image(path: str | os.PathLike, limit: int | None = None) -> Image.Image:
    """``Image.open(path)`` (the header parsed, nothing decoded), refused with ``ImageTooLarge``
    (``PATH: N pixels exceeds data.max_image_pixels=L``) when it declares more than ``limit``
    pixels (default: this process's ``data.max_image_pixels``). Use it as PIL's: ``with open_image(p) as im``."""
    with _pil_check_off():
        im = Image.open(path)
    reason = too_large(im.size, limit)
    if reason is not None:
        im.close()
        raise ImageTooLarge(f"{os.fspath(path)}: {reason}")
    return im


def file_problem(st: os.stat_result) -> str | None:
    """What is wrong with an image's ``os.stat`` (a symlink followed): not a regular file, or empty."""
    if not stat.S_ISREG(st.st_mode):
        return "not a file"
    return "empty file" if st.st_size == 0 else None


def content_problem(path: str | os.PathLike, mode: str, limit: int | None = None) -> str | None:
    """Why the image file at ``path`` cannot be used under ``data.check_images`` ``mode`` (None when it can).

    ``exists``: nothing is read; ``open``: the header must parse and declare at most ``limit``
    pixels (default: this process's ``data.max_image_pixels``); ``decode``: every pixel must
    also decode (a truncated body), a bomb being refused before its pixels are allocated.
    """
    if mode == "exists":
        return None
    try:
        with _pil_check_off():
            im = Image.open(path)
        with im:
            reason = too_large(im.size, limit)
            if reason is None and mode == "decode":
                im.load()
    except Exception as e:  # PIL raises many types for a bad file
        return f"{type(e).__name__}: {e}"
    return reason
