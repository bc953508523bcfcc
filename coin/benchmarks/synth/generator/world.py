"""The visual world of CoIN-Synth: shapes, colours, words and book covers drawn with PIL.

Everything here is deterministic given a ``random.Random``: a scene is sampled as plain
data (``Obj`` records with exact pixel boxes) and only then rendered, so captions,
questions and answers are all computed from the same ground truth.

The world is small on purpose. A ~5M-parameter model looking at 64x64 pixels through
16 patches must be able to *see* everything a task asks about, so objects sit on a 2x2
grid with a little jitter, come in two clearly different sizes, and text is drawn large.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFilter, ImageFont

IMAGE_SIZE = 64

SHAPES = ("circle", "square", "triangle", "cross", "star", "heart")  # silhouettes a 16-patch ViT tells apart
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "white": (245, 245, 245),
}
BACKGROUNDS = {"black": (20, 20, 20), "gray": (110, 110, 110)}
SIZES = {"small": 20, "large": 30}
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
_CELL_CENTER = {
    "top left": (16, 16),
    "top right": (48, 16),
    "bottom left": (16, 48),
    "bottom right": (48, 48),
}
WORDS = ("cat", "dog", "sun", "moon", "tree", "fish", "bird", "book", "lamp", "ship", "cup", "key")
AUTHORS = ("ann", "bob", "kim", "max", "tom", "liz")
GENRES = {  # cover colour -> genre, so the genre is visible
    "red": "romance",
    "blue": "mystery",
    "green": "travel",
    "yellow": "cooking",
    "purple": "fantasy",
}
TEXT_COLORS = ("white", "yellow", "red", "blue", "green")


@dataclass(frozen=True)
class Obj:
    """One shape in a scene, with its exact pixel box ``(x1, y1, x2, y2)``."""

    shape: str
    color: str
    size: str
    position: str
    box: tuple[int, int, int, int]

    def describe(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass
class Scene:
    """A picture as data: a background, shapes, optional text and an optional book cover."""

    background: str = "black"
    objects: list[Obj] = field(default_factory=list)
    word: str | None = None  # a rendered word (TextVQA-like)
    word_color: str | None = None
    book: dict | None = None  # {"title", "author", "color", "genre"}
    degradation: str | None = None  # "blur", "dark", "crop" (VizWiz-like)
    unreadable: bool = False  # degraded beyond recognition


def box_to_unit(box: tuple[int, int, int, int], size: int = IMAGE_SIZE) -> list[float]:
    """Pixel box -> CoIN box: floats in [0, 1], 2 decimals (images are already square)."""
    return [round(min(max(v / size, 0.0), 1.0), 2) for v in box]


def format_box(box: list[float]) -> str:
    """The CoIN string form ``[x1, y1, x2, y2]`` with two decimals."""
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def sample_objects(rng: random.Random, n: int, unique: bool = True) -> list[Obj]:
    """``n`` shapes in distinct grid cells; with ``unique`` no two share shape *and* colour."""
    cells = rng.sample(POSITIONS, n)
    objs: list[Obj] = []
    seen: set[tuple[str, str]] = set()
    for pos in cells:
        while True:
            shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
            if not unique or (shape, color) not in seen:
                break
        seen.add((shape, color))
        size = rng.choice(list(SIZES))
        half = SIZES[size] // 2
        cx, cy = _CELL_CENTER[pos]
        cx += rng.randint(-2, 2)  # small enough that the cell's canonical box keeps IoU > 0.5
        cy += rng.randint(-2, 2)
        objs.append(Obj(shape, color, size, pos, (cx - half, cy - half, cx + half, cy + half)))
    return objs


def _star(box: tuple[int, int, int, int], points: int = 5) -> list[tuple[float, float]]:
    import math

    x1, y1, x2, y2 = box
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    pts = []
    for k in range(points * 2):
        rad = r if k % 2 == 0 else r * 0.45
        ang = -math.pi / 2 + k * math.pi / points
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, obj: Obj) -> None:
    x1, y1, x2, y2 = obj.box
    fill = COLORS[obj.color]
    w = x2 - x1
    if obj.shape == "circle":
        draw.ellipse(obj.box, fill=fill)
    elif obj.shape == "square":
        draw.rectangle(obj.box, fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    elif obj.shape == "cross":
        t = max(w // 3, 2)
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        draw.rectangle((cx - t // 2, y1, cx + t // 2, y2), fill=fill)
        draw.rectangle((x1, cy - t // 2, x2, cy + t // 2), fill=fill)
    elif obj.shape == "star":
        draw.polygon(_star(obj.box), fill=fill)
    elif obj.shape == "heart":
        r = w / 4
        draw.ellipse((x1, y1, x1 + 2 * r, y1 + 2 * r), fill=fill)
        draw.ellipse((x2 - 2 * r, y1, x2, y1 + 2 * r), fill=fill)
        draw.polygon([(x1, y1 + r), (x2, y1 + r), ((x1 + x2) / 2, y2)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {obj.shape!r}")


_FONTS: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.FreeTypeFont:
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)
    return _FONTS[size]


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """Draw ``scene`` as a 64x64 RGB image; degradation noise comes from ``rng``."""
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    if scene.book is not None:
        draw.rectangle((6, 2, 57, 61), fill=COLORS[scene.book["color"]])
        draw.rectangle((6, 2, 10, 61), fill=(40, 40, 40))  # the spine
        _centered_text(draw, scene.book["title"], 14, 18, (10, 10, 10))
        _centered_text(draw, scene.book["author"], 46, 13, (255, 255, 255))
    for obj in scene.objects:
        _draw_shape(draw, obj)
    if scene.word is not None:
        _centered_text(draw, scene.word, rng.choice((22, 32, 42)), 20, COLORS[scene.word_color or "white"])
    if scene.degradation == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=12 if scene.unreadable else 1.5))
    elif scene.degradation == "dark":
        factor = 0.04 if scene.unreadable else 0.45
        img = img.point(lambda v: int(v * factor))
    elif scene.degradation == "crop":
        # keep a corner: unreadable crops show an empty corner of the background
        img = img.crop((0, 0, 40, 40)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.NEAREST)
    return img


def _centered_text(draw: ImageDraw.ImageDraw, text: str, cy: int, size: int, fill: tuple[int, int, int]) -> None:
    font = _font(size)
    x1, y1, x2, y2 = draw.textbbox((0, 0), text, font=font)
    x = (IMAGE_SIZE - (x2 - x1)) / 2 - x1
    y = cy - (y2 - y1) / 2 - y1
    draw.text((x, y), text, font=font, fill=fill)


def caption(scene: Scene) -> str:
    """The pretraining caption: every fact any of the eight tasks can ask about.

    The base model learns to *say* what it sees in this one sentence style; the tasks
    then only have to teach their answer formats (CoIN's premise).
    """
    if scene.unreadable:
        what = {"blur": "very blurry", "dark": "too dark", "crop": "cropped"}[scene.degradation or "blur"]
        return f"the image is {what}, nothing can be seen."
    parts: list[str] = []
    if scene.degradation:
        parts.append({"blur": "a blurry image.", "dark": "a dark image.", "crop": "a cropped image."}[scene.degradation])
    if scene.book is not None:
        b = scene.book
        parts.append(f"a {b['color']} {b['genre']} book titled {b['title']} by {b['author']}.")
    if scene.word is not None:
        parts.append(f"the word {scene.word} written in {scene.word_color}.")
    if scene.objects:
        n = len(scene.objects)
        parts.append(f"{n} shape{'s' if n > 1 else ''} on {scene.background}:")
        for obj in sorted(scene.objects, key=lambda o: POSITIONS.index(o.position)):  # reading order
            where = "" if scene.degradation == "crop" else f" at {obj.position}"
            parts.append(f"a {obj.describe()}{where}.")
    return " ".join(parts)


# label spaces for the vision tower's own pretraining (index 0 = "none")
LABEL_SPACES: dict[str, tuple[str, ...]] = {
    "shape": ("none",) + SHAPES,
    "color": ("none",) + tuple(COLORS),
    "size": ("none",) + tuple(SIZES),
    "word": ("none",) + WORDS,
    "word_color": ("none",) + TEXT_COLORS,
    "title": ("none",) + WORDS,
    "author": ("none",) + AUTHORS,
    "cover": ("none",) + tuple(GENRES),
    "background": tuple(BACKGROUNDS),
    "view": ("clear", "blur", "dark", "crop", "unreadable"),
}
CELL_LABELS = ("shape", "color", "size")  # one per grid cell, in POSITIONS order


def labels(scene: Scene) -> dict[str, list[int] | int]:
    """What a vision encoder should see in ``scene``, as class indices (see ``LABEL_SPACES``).

    The tiny model's vision tower is first trained to predict these (a stand-in for the
    contrastive pretraining a real CLIP tower has had), then the whole model learns to talk
    about them.
    """
    sp = LABEL_SPACES
    cells = {k: [0] * len(POSITIONS) for k in CELL_LABELS}
    hidden = scene.unreadable
    for obj in scene.objects:
        if hidden or (scene.degradation == "crop" and obj.position != "top left"):
            continue
        k = POSITIONS.index(obj.position)
        cells["shape"][k] = sp["shape"].index(obj.shape)
        cells["color"][k] = sp["color"].index(obj.color)
        cells["size"][k] = sp["size"].index(obj.size)
    book = scene.book or {}
    visible_word = scene.word if not hidden else None
    return {
        **cells,
        "word": sp["word"].index(visible_word) if visible_word else 0,
        "word_color": sp["word_color"].index(scene.word_color) if visible_word and scene.word_color else 0,
        "title": sp["title"].index(book["title"]) if book else 0,
        "author": sp["author"].index(book["author"]) if book else 0,
        "cover": sp["cover"].index(book["color"]) if book else 0,
        "background": sp["background"].index(scene.background),
        "view": 4 if hidden else sp["view"].index(scene.degradation or "clear"),
    }
