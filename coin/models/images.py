"""Images as the wrappers read them: opened with the record named in errors, padded to a square or
centre-cropped as LLaVA does, and kept preprocessed in a bounded cache (``PixelCache``)."""

from __future__ import annotations

import threading

import torch
from PIL import Image

from coin.data.images import open_image  # the pixel limit, data.max_image_pixels
from coin.errors import ImageError


def load_image(path: str, record_id: str = "?") -> Image.Image:
    try:
        with open_image(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"record {record_id}: image {path} does not exist") from None
    except Exception as e:  # PIL raises several types for corrupt files
        raise ImageError(f"record {record_id}: image {path} cannot be read ({e})") from None


def expand_to_square(img: Image.Image, image_processor) -> Image.Image:
    """LLaVA-1.5's ``image_aspect_ratio: pad``: centre the image on a square of the mean colour.

    Without it, CLIP's processor centre-crops a non-square image, cutting off part of the
    scene (and CoIN's grounding boxes are normalised to the padded square). A square image
    is returned unchanged.
    """
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    square = Image.new(img.mode, (side, side), pad_colour(image_processor))
    square.paste(img, ((side - w) // 2, (side - h) // 2))
    return square


def centre_crop(img: Image.Image, image_processor) -> Image.Image:
    """The original CoIN evaluation's ScienceQA, ImageNet, Grounding and VQAv2 images (``eval.image_mode``):
    the raw image through CLIP's ``preprocess``, which resizes the shortest side to its size (336) and
    centre-crops a square of its crop size.

    A processor that does both itself (CLIP's: ``shortest_edge`` and ``do_center_crop``) gets the image
    as it is, exactly as the original hands it over; for any other, the same two steps are done here
    (bicubic, transformers' sizes and offsets), so the processor's own resize finds a square.
    """
    size = dict(getattr(image_processor, "size", None) or {})
    crop = dict(getattr(image_processor, "crop_size", None) or {})
    if "shortest_edge" in size and getattr(image_processor, "do_center_crop", False) and crop:
        return img
    side = crop.get("height") or size.get("height") or size.get("shortest_edge")
    if not side:
        raise ValueError(f"eval.image_mode: cannot centre-crop for an image processor without a size ({size})")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(side * long / short)
    new_w, new_h = (side, new_long) if w <= h else (new_long, side)
    img = img.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - side) // 2, (new_h - side) // 2
    return img.crop((left, top, left + side, top + side))


def pad_colour(image_processor) -> tuple[int, ...]:
    """The processor's mean colour as LLaVA's ``expand2square`` writes it: ``int(255 * mean)``,
    truncated, not rounded ((122, 116, 104) for CLIP's mean, where rounding gives (123, 117, 104))."""
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return tuple(int(255 * m) for m in mean)


class PixelCache:
    """Preprocessed images by path, bounded by bytes, stored in the dtype the model reads them in.

    LLaVA-1.5's 3x336x336 fp32 pixels are 1.35 MB; a count-bounded cache of 50,000 held 68 GB
    per process. Stored in the vision tower's dtype (bf16 on a GPU: what the tower casts them
    to anyway), an entry is half that, and once ``max_bytes`` is reached nothing more is kept
    (a later pass over the same images hits the entries already there).
    """

    def __init__(self, max_bytes: int, dtype: torch.dtype | None = None) -> None:
        self.max_bytes = max_bytes
        self.dtype = dtype
        self.bytes = 0
        self._items: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()  # the evaluation's prefetch thread puts too

    def get(self, key: str) -> torch.Tensor | None:
        return self._items.get(key)

    def put(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """``value`` in the cache's dtype, kept if it fits."""
        if self.dtype is not None and value.is_floating_point():
            value = value.to(self.dtype)
        size = value.numel() * value.element_size()
        with self._lock:
            if key not in self._items and self.bytes + size <= self.max_bytes:
                self._items[key] = value
                self.bytes += size
        return value

    def __len__(self) -> int:
        return len(self._items)


DEFAULT_IMAGE_CACHE_MB = 2048  # per process; 8 GPU processes hold 16 GB at most
