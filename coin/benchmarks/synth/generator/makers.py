"""The eight CoIN-Synth tasks: one analogue per CoIN task, each with its original's answer form.

Each maker takes a ``random.Random`` and returns an ``Example``: the scene to draw, the
question body (without the format-instruction line, which the instruction family adds),
the answer and, where the original has them, ten annotator answers or a box. Makers are
registered by task name in ``MAKERS``; a plugin task adds its own from its own file with
``@synth_maker("MyTask")`` (the scene it returns is drawn by ``world.render``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from coin.benchmarks.synth.generator import world as w
from coin.registry import Registry


@dataclass
class Example:
    """One generated question: what to draw, the question body, the answer (and ten answers or a box)."""

    scene: w.Scene
    question: str  # body of the prompt; "" when the instruction line carries everything
    answer: str
    answers: list[str] | None = None  # 10 annotator answers (TextVQA-, VQAv2-like)
    bbox: str | None = None  # grounding answer, "[x1, y1, x2, y2]"
    detail: str | None = None  # grounding: the referring expression


Maker = Callable[[random.Random], Example]

MAKERS: Registry[Maker] = Registry("CoIN-Synth task")


def synth_maker(task: str) -> Callable[[Maker], Maker]:
    """Register the decorated function as the CoIN-Synth generator of ``task`` (a registered task's name).

    A task's name need not be a Python name ("OCR-VQA"), so the function carries it as its ``name``.
    """

    def register(maker: Maker) -> Maker:
        maker.name = task  # type: ignore[attr-defined]
        return MAKERS.register(maker)

    return register


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + k) for k in range(n)]


def _options(rng: random.Random, correct: str, pool: tuple[str, ...] | list[str], n: int) -> tuple[list[str], str]:
    others = [p for p in pool if p != correct]
    opts = rng.sample(others, n - 1) + [correct]
    rng.shuffle(opts)
    return opts, _letters(n)[opts.index(correct)]


@synth_maker("ScienceQA")
def scienceqa(rng: random.Random) -> Example:
    """Multiple choice about one object's attributes; the answer is the option's letter."""
    obj = w.sample_objects(rng, 1)[0]
    kind = rng.choice(("shape", "color", "size", "position"))
    n = 2 if kind == "size" else rng.choice((3, 4))
    if kind == "shape":
        q, (opts, letter) = "Which shape is in the image?", _options(rng, obj.shape, w.SHAPES, n)
    elif kind == "color":
        q, (opts, letter) = f"What is the color of the {obj.shape}?", _options(rng, obj.color, list(w.COLORS), n)
    elif kind == "size":
        q, (opts, letter) = f"Is the {obj.shape} small or large?", _options(rng, obj.size, list(w.SIZES), n)
    else:
        q, (opts, letter) = f"Where is the {obj.shape}?", _options(rng, obj.position, w.POSITIONS, n)
    body = q + "\n" + "\n".join(f"{L}. {o}" for L, o in zip(_letters(n), opts))
    return Example(w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=[obj]), body, letter)


def _ten_answers(rng: random.Random, correct: str, wrong_pool: list[str], n_wrong_max: int) -> list[str]:
    n_wrong = rng.randint(0, n_wrong_max)
    answers = [correct] * (10 - n_wrong) + [rng.choice(wrong_pool) for _ in range(n_wrong)]
    rng.shuffle(answers)
    return answers


@synth_maker("TextVQA")
def textvqa(rng: random.Random) -> Example:
    """Read a rendered word; the prompt lists noisy OCR tokens as TextVQA prompts do."""
    word = rng.choice(w.WORDS)
    color = rng.choice(w.TEXT_COLORS)
    scene = w.Scene(background=rng.choice(list(w.BACKGROUNDS)), word=word, word_color=color)
    q = rng.choice(("What word is written in the image?", "What does the text say?", f"What is written in {color}?"))
    tokens = [word] + rng.sample([x for x in w.WORDS if x != word], rng.randint(0, 2))
    rng.shuffle(tokens)
    body = f"{q}\nReference OCR token: {', '.join(tokens)}"
    answers = _ten_answers(rng, word, [word + "s", rng.choice(w.WORDS), "unanswerable"], 3)
    return Example(scene, body, word, answers=answers)


@synth_maker("ImageNet")
def imagenet(rng: random.Random) -> Example:
    """Classify the single object; the class is its shape."""
    obj = w.sample_objects(rng, 1)[0]
    return Example(w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=[obj]), "What is the object in the image?", obj.shape)


@synth_maker("GQA")
def gqa(rng: random.Random) -> Example:
    """Compositional questions over two or three objects: attributes by position, sides, existence."""
    objs = w.sample_objects(rng, rng.choice((2, 3)))
    scene = w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=objs)
    by_shape = {o.shape: o for o in objs if sum(p.shape == o.shape for p in objs) == 1}
    kind = rng.choice(("color_of_shape", "shape_at", "color_at", "side", "exists"))
    if kind == "color_of_shape" and by_shape:
        o = by_shape[rng.choice(sorted(by_shape))]
        return Example(scene, f"What color is the {o.shape}?", o.color)
    if kind == "shape_at":
        o = rng.choice(objs)
        return Example(scene, f"What shape is at the {o.position}?", o.shape)
    if kind == "side":
        o = rng.choice(objs)
        side = "left" if o.position.endswith("left") else "right"
        return Example(scene, f"Is the {o.color} {o.shape} on the left or right?", side)
    if kind == "exists":
        color = rng.choice(list(w.COLORS))
        ans = "yes" if any(o.color == color for o in objs) else "no"
        return Example(scene, f"Are there any {color} shapes?", ans)
    o = rng.choice(objs)
    return Example(scene, f"What color is the shape at the {o.position}?", o.color)


@synth_maker("VizWiz")
def vizwiz(rng: random.Random) -> Example:
    """Degraded photos (blur, low light, crop); a third cannot be answered."""
    degradation = rng.choice(("blur", "dark", "crop"))
    unreadable = rng.random() < 0.35
    if rng.random() < 0.3:  # a word
        word, color = rng.choice(w.WORDS), rng.choice(w.TEXT_COLORS)
        scene = w.Scene(word=word, word_color=color, degradation=degradation, unreadable=unreadable)
        if degradation == "crop":  # a crop always cuts the word: say so
            scene.unreadable, unreadable = True, True
        q, ans = "What does this say?", word
    else:
        obj = w.sample_objects(rng, 1)[0]
        if degradation == "crop":  # readable crops keep the top-left cell, unreadable ones lose the object
            pos = "bottom right" if unreadable else "top left"
            obj = _move(obj, pos)
        scene = w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=[obj], degradation=degradation, unreadable=unreadable)
        q, ans = rng.choice((("What color is this?", obj.color), ("What is this?", obj.shape)))
    return Example(scene, q, "unanswerable" if unreadable else ans)


def _move(obj: w.Obj, position: str) -> w.Obj:
    half = w.SIZES[obj.size] // 2
    cx, cy = {"top left": (16, 16), "bottom right": (50, 50)}[position]
    return w.Obj(obj.shape, obj.color, obj.size, position, (cx - half, cy - half, cx + half, cy + half))


@synth_maker("Grounding")
def grounding(rng: random.Random) -> Example:
    """Refer to one of two or three objects; answer its box normalised to [0, 1]."""
    objs = w.sample_objects(rng, rng.choice((2, 3)))
    target = rng.choice(objs)
    same_shape = [o for o in objs if o.shape == target.shape]
    if len(same_shape) == 1 and rng.random() < 0.5:
        desc = f"the {target.shape}"
    else:
        desc = f"the {target.color} {target.shape}"
    box = w.format_box(w.box_to_unit(target.box))
    scene = w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=objs)
    return Example(scene, "", box, bbox=box, detail=desc)


@synth_maker("VQAv2")
def vqav2(rng: random.Random) -> Example:
    """Counting, yes/no and colour questions with ten annotators who sometimes disagree."""
    objs = w.sample_objects(rng, rng.randint(1, 3))
    scene = w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=objs)
    kind = rng.choice(("count", "yesno", "color"))
    if kind == "count":
        n = len(objs)
        wrong = [str(max(n - 1, 1)), str(n + 1)]
        return Example(scene, "How many shapes are there?", str(n), answers=_ten_answers(rng, str(n), wrong, 3))
    if kind == "yesno":
        shape, color = rng.choice(w.SHAPES), rng.choice(list(w.COLORS))
        if rng.random() < 0.5:  # ask about something present half of the time
            o = rng.choice(objs)
            shape, color = o.shape, o.color
        ans = "yes" if any(o.shape == shape and o.color == color for o in objs) else "no"
        other = "no" if ans == "yes" else "yes"
        return Example(scene, f"Is there a {color} {shape}?", ans, answers=_ten_answers(rng, ans, [other], 2))
    o = rng.choice(objs)
    wrong = [c for c in w.COLORS if c != o.color]
    return Example(scene, f"What color is the {o.shape}?", o.color, answers=_ten_answers(rng, o.color, wrong, 3))


@synth_maker("OCR-VQA")
def ocrvqa(rng: random.Random) -> Example:
    """Book covers with a title, an author and a genre shown by the cover colour."""
    color = rng.choice(list(w.GENRES))
    book = {"title": rng.choice(w.WORDS), "author": rng.choice(w.AUTHORS), "color": color, "genre": w.GENRES[color]}
    scene = w.Scene(background="gray", book=book)
    kind = rng.choice(("title", "author", "genre", "is_genre"))
    if kind == "title":
        return Example(scene, "What is the title of this book?", book["title"])
    if kind == "author":
        return Example(scene, "Who wrote this book?", book["author"])
    if kind == "genre":
        return Example(scene, "What is the genre of this book?", book["genre"])
    genre = rng.choice(sorted(w.GENRES.values()))
    return Example(scene, f"Is this a {genre} book?", "yes" if genre == book["genre"] else "no")


def caption_scene(rng: random.Random) -> w.Scene:
    """A scene for base pretraining, drawn from the same mix of pictures the tasks use."""
    r = rng.random()
    if r < 0.5:
        return w.Scene(background=rng.choice(list(w.BACKGROUNDS)), objects=w.sample_objects(rng, rng.randint(1, 3)))
    if r < 0.65:
        return textvqa(rng).scene
    if r < 0.8:
        return ocrvqa(rng).scene
    return vizwiz(rng).scene


def _sentence_qa(rng: random.Random, scene: w.Scene) -> tuple[str, str]:
    """One question about ``scene`` answered in a full sentence (the base's chat style)."""
    if scene.unreadable:
        what = {"blur": "very blurry", "dark": "too dark", "crop": "cropped"}[scene.degradation or "blur"]
        q = rng.choice(("What is this?", "What color is this?", "What does this say?", "What do you see?"))
        return q, f"The image is {what}, nothing can be seen."
    if scene.book is not None:
        b = scene.book
        return rng.choice((
            ("What is the title of the book?", f"The title of the book is {b['title']}."),
            ("Who is the author of the book?", f"The book was written by {b['author']}."),
            ("What kind of book is this?", f"This is a {b['genre']} book."),
            ("What color is the cover?", f"The cover is {b['color']}."),
        ))
    if scene.word is not None:
        return rng.choice((
            ("Which word is written?", f"The word {scene.word} is written."),
            ("What color is the text?", f"The text is {scene.word_color}."),
        ))
    objs = scene.objects
    o = rng.choice(objs)
    shapes = [p.shape for p in objs]
    colors = [p.color for p in objs]
    kind = rng.choice(("at", "color", "size", "where", "box", "count", "exists", "see"))
    if scene.degradation and kind == "box":
        kind = "where"
    if scene.degradation == "crop" and kind in ("at", "where"):
        kind = "see"
    if kind == "at":
        return f"What is at the {o.position}?", f"At the {o.position} there is a {o.describe()}."
    if kind == "color" and shapes.count(o.shape) == 1:
        return f"Which color does the {o.shape} have?", f"The {o.shape} is {o.color}."
    if kind == "size" and shapes.count(o.shape) == 1:
        return f"How big is the {o.shape}?", f"The {o.shape} is {o.size}."
    if kind == "where":
        return f"Where is the {o.color} {o.shape}?", f"The {o.color} {o.shape} is at the {o.position}."
    if kind == "box":
        box = w.format_box(w.box_to_unit(o.box))
        return f"Where exactly is the {o.color} {o.shape}?", f"The {o.color} {o.shape} is inside {box}."
    if kind == "count":
        n = len(objs)
        return "How many shapes can you see?", f"There {'is' if n == 1 else 'are'} {n} shape{'' if n == 1 else 's'}."
    if kind == "exists":
        shape, color = (o.shape, o.color) if rng.random() < 0.5 else (rng.choice(w.SHAPES), rng.choice(list(w.COLORS)))
        if any(p.shape == shape and p.color == color for p in objs):
            return f"Can you see a {color} {shape}?", f"Yes, there is a {color} {shape}."
        return f"Can you see a {color} {shape}?", f"No, there is no {color} {shape}."
    if len(set(colors)) == len(colors) and rng.random() < 0.5:
        return f"What shape is {o.color}?", f"The {o.color} shape is a {o.shape}."
    return "What do you see?", f"I see a {o.describe()}."


def pretrain_example(rng: random.Random, turns: int = 3) -> tuple[w.Scene, list[tuple[str, str]]]:
    """(scene, conversation) for the base model: a caption, or questions answered in sentences.

    The base learns what is in the pictures and to answer in full sentences, like a chat
    LM; none of the eight tasks' answer formats (a letter, a bare phrase, a box,
    "unanswerable") ever appears, so the tasks mostly teach formats (CoIN's premise).
    Several questions share one image (a multi-turn conversation): more supervised tokens
    per image the vision tower encodes.
    """
    scene = caption_scene(rng)
    if rng.random() < 0.25:
        return scene, [("Describe the image.", w.caption(scene))]
    pairs: list[tuple[str, str]] = []
    for _ in range(turns * 3):
        qa = _sentence_qa(rng, scene)
        if qa[0] not in {q for q, _ in pairs}:
            pairs.append(qa)
        if len(pairs) == turns:
            break
    return scene, pairs
