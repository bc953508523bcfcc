"""Instruction families as data: the format-instruction line each task's prompts end with.

CoIN asks whether the *wording* of the instruction matters, so prompt wording lives here
and nowhere else. A family maps every task to its templates:

- ``original`` (Type1): the line of the released files (SPEC section 2);
- ``diverse`` (Type2): one distinct line per task, from table 1 of the paper;
- ``10type``: ten lines per task, one drawn per sample (seeded by sample id).

Only some strings are known from the paper; every string we wrote ourselves carries
``ours=True`` so a report can say which prompts differ from the original benchmark.
Grounding's line embeds the referring expression (``{}``), so applying a family to a
Grounding prompt first reads the expression back out of whichever template it uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

from coin.registry import Registry
from coin.tasks.registry import GROUNDING, LETTER, SHORT, TASKS


@dataclass(frozen=True)
class Template:
    """One format-instruction line; ``ours`` marks a string not taken from the paper."""

    text: str
    ours: bool = False


@dataclass(frozen=True)
class Family:
    """An instruction family: per task a tuple of templates; ``per_sample`` draws one per sample."""

    name: str
    description: str
    templates: Mapping[str, tuple[Template, ...]]
    per_sample: bool = False


def _known(*texts: str) -> tuple[Template, ...]:
    return tuple(Template(t) for t in texts)


def _ours(*texts: str) -> tuple[Template, ...]:
    return tuple(Template(t, ours=True) for t in texts)


ORIGINAL = Family("original", "Type1: the line of the released CoIN files", {
    "ScienceQA": _known(LETTER), "TextVQA": _known(SHORT), "ImageNet": _known(SHORT), "GQA": _known(SHORT),
    "VizWiz": _known(SHORT), "Grounding": _known(GROUNDING), "VQAv2": _known(SHORT), "OCR-VQA": _known(SHORT),
})

DIVERSE = Family("diverse", "Type2: one distinct line per task (paper, table 1)", {
    "ScienceQA": _known(LETTER),
    "TextVQA": _known("Capture the essence of your response in a single word or a concise phrase."),
    "ImageNet": _known("Express your answer in a single word or a short, descriptive phrase."),
    "GQA": _known("Respond to the question briefly, using only one word or a phrase."),
    "VizWiz": _known("Provide a succinct response with a single word or phrase."),
    "Grounding": _known(GROUNDING),
    "VQAv2": _known(SHORT),
    "OCR-VQA": _known("Condense your answer into a single word or concise phrase."),
})

TEN_TYPE = Family("10type", "ten lines per task, one drawn per sample (seeded)", {
    "ImageNet": _known(  # observed in the released 10Type files (SPEC section 7)
        "Use one word or a short phrase to classify the content of the image.",
        "Respond to the question with a single word or a short, descriptive phrase.",
        "Summarize your response in a single word or a brief phrase.",
        "Identify the type of content in the image using one word or a concise phrase.",
        "Express your answer with one word or a short, descriptive phrase.",
        "Describe the content of the image using one word or a concise phrase.",
        "Use a single word or a short phrase to categorize the image content.",
        "Provide your answer using a single word or a brief phrase.",
        "Classify the image content using only one word or a brief phrase.",
        "Give your answer in the form of a single word or a concise phrase.",
    ),
    "ScienceQA": _ours(
        "Reply with only the letter of the correct option.",
        "Choose the correct option and answer with its letter alone.",
        "Give just the letter of the right choice.",
        "Respond with the letter that marks the correct answer.",
        "Select the best option and reply with its letter only.",
        "Answer using only the letter of the matching choice.",
        "Pick the right answer from the choices and state its letter.",
        "Output the option letter of the correct answer, nothing else.",
        "Indicate the correct choice by its letter only.",
        "Provide the letter of the correct option without any explanation.",
    ),
    "TextVQA": _ours(
        "Read the text in the image and answer with a single word or phrase.",
        "Answer briefly, using a word or short phrase taken from the image's text.",
        "Respond with one word or a short phrase.",
        "Give a concise answer of one word or a short phrase.",
        "Use the visible text to answer in a single word or a brief phrase.",
        "Keep your answer to a single word or a short phrase.",
        "Reply with just a word or a short phrase.",
        "State the answer in one word or a concise phrase.",
        "Answer with the text you read, as one word or a short phrase.",
        "Provide a short answer: one word or a brief phrase.",
    ),
    "GQA": _ours(
        "Answer the question in one word or a short phrase.",
        "Respond briefly with a single word or phrase.",
        "Give a one-word or short-phrase answer.",
        "Reply concisely, using only a word or a phrase.",
        "Look at the scene and answer with a single word or a short phrase.",
        "State your answer as one word or a brief phrase.",
        "Keep the answer short: a single word or phrase.",
        "Use one word or a concise phrase to answer.",
        "Answer with just a word or a few words.",
        "Provide a brief answer, a single word or a short phrase.",
    ),
    "VizWiz": _ours(
        "Give a brief answer of one word or a short phrase.",
        "Respond with a single word or a short phrase.",
        "Reply with one word or a concise phrase.",
        "Keep your answer to one word or a brief phrase.",
        "Answer succinctly with a word or a short phrase.",
        "State the answer using a single word or phrase.",
        "Use only a word or a short phrase in your answer.",
        "Provide a one-word or short-phrase reply.",
        "Answer with a short phrase or a single word.",
        "Your answer should be a single word or a brief phrase.",
    ),
    "Grounding": _ours(
        "Give the bounding box [x1, y1, x2, y2] of the region described by: {}",
        "Locate the region this sentence refers to and output its box coordinates: {}",
        "Output the normalized bounding box of the object described here: {}",
        "Find the region matching this description and give its bounding box: {}",
        "What are the box coordinates of the region described as follows? {}",
        "Return the bounding box, as [x1, y1, x2, y2], of: {}",
        "Identify the region this expression describes and provide its bounding box coordinates: {}",
        "Provide the coordinates of the box around the region this phrase describes: {}",
        "Mark the region described by this sentence with a bounding box: {}",
        "Ground this description in the image and answer with its bounding box: {}",
    ),
    "VQAv2": _ours(
        "Answer using one word or a short phrase.",
        "Give your answer as a single word or a brief phrase.",
        "Respond in one word or a short phrase.",
        "Reply with a word or a short phrase only.",
        "Answer concisely with a single word or phrase.",
        "Keep the answer to one word or a few words.",
        "State the answer briefly in a word or phrase.",
        "Use a single word or a concise phrase to reply.",
        "Provide a short answer of one word or phrase.",
        "Answer in as few words as possible: a single word or a short phrase.",
    ),
    "OCR-VQA": _ours(
        "Read the cover and answer with a single word or phrase.",
        "Answer in one word or a short phrase based on the text shown.",
        "Give a concise answer using a word or a short phrase.",
        "Respond with the exact word or short phrase that answers the question.",
        "Reply with a single word or brief phrase.",
        "Keep your answer to one word or a concise phrase.",
        "Use the text on the cover to answer in a word or short phrase.",
        "State the answer as a single word or phrase.",
        "Provide a brief answer of one word or a short phrase.",
        "Answer with only a word or a short phrase.",
    ),
}, per_sample=True)

FAMILIES: Registry[Family] = Registry("instruction family")
for _f in (ORIGINAL, DIVERSE, TEN_TYPE):
    FAMILIES.register(_f.name, _f)

ALIASES = {"type1": "original", "type2": "diverse", "10types": "10type"}


def get_family(name: str) -> Family:
    """The family ``name`` (case-insensitive; "type1"/"type2" accepted); unknown names list the choices."""
    key = str(name).lower()
    return FAMILIES.get(ALIASES.get(key, key))


def templates(family: str, task: str) -> tuple[Template, ...]:
    """The templates of ``task`` in ``family``."""
    fam = get_family(family)
    TASKS.get(task)
    return fam.templates[task]


def draw(family: str, task: str, sample_id: str, seed: int = 0) -> Template:
    """The template a sample gets: fixed, or a seeded draw keyed by the sample's id.

    Keyed by id (not position), so volume subsets and shuffles keep each sample's line.
    """
    options = templates(family, task)
    if len(options) == 1:
        return options[0]
    digest = hashlib.blake2b(f"{seed}/{task}/{sample_id}".encode(), digest_size=8).digest()
    return options[int.from_bytes(digest, "big") % len(options)]


def _norm(line: str) -> str:
    return line.strip().rstrip(".").strip().lower()


@lru_cache(maxsize=None)
def _known_lines(task: str) -> frozenset[str]:
    return frozenset(_norm(t.text) for fam in FAMILIES.names() for t in FAMILIES.get(fam).templates[task] if "{}" not in t.text)


@lru_cache(maxsize=None)
def _grounding_patterns() -> tuple[re.Pattern, ...]:
    out = []
    for fam in FAMILIES.names():
        for t in FAMILIES.get(fam).templates["Grounding"]:
            head, _, tail = t.text.partition("{}")
            out.append(re.compile(re.escape(head.strip()) + r"\s*(.+?)\s*" + re.escape(tail.strip()) + "$", re.S))
    return tuple(sorted(out, key=lambda p: -len(p.pattern)))  # most specific first


def split_prompt(text: str, task: str, where: str = "prompt") -> tuple[str, str | None]:
    """Split a prompt into (body before the instruction line, embedded description or None).

    Raises ``ValueError`` naming ``where`` when the last line is not an instruction of
    ``task`` in any family: replacing it would silently drop part of the question.
    """
    body, _, last = text.rstrip().rpartition("\n")
    if "{}" in TASKS.get(task).instruction:
        for pat in _grounding_patterns():
            if m := pat.match(last.strip()):
                return body, m.group(1)
        raise ValueError(f"{where}: no {task} instruction template matches {last.strip()!r}")
    if not body.strip():
        raise ValueError(f"{where}: expected the question and then the format-instruction line, got {text!r}")
    if _norm(last) not in _known_lines(task):
        raise ValueError(f"{where}: last line {last.strip()!r} is not a {task} format instruction of any family")
    return body, None


def rewrite(text: str, task: str, family: str, sample_id: str, seed: int = 0, where: str = "prompt") -> str:
    """``text`` with its format-instruction line replaced by ``family``'s line for this sample."""
    body, description = split_prompt(text, task, where)
    line = draw(family, task, sample_id, seed).text
    if description is not None:
        line = line.format(description)
    return f"{body}\n{line}" if body else line


def _kind(item: Any) -> str:
    if isinstance(item, dict):
        return "train" if "conversations" in item else "test"
    if dataclasses.is_dataclass(item) and hasattr(item, "prompt"):
        return "sample"
    raise TypeError(f"cannot apply an instruction family to a {type(item).__name__}")


def _apply_one(item: Any, family: str, seed: int, task: str | None, k: int) -> Any:
    kind = _kind(item)
    if kind == "sample":
        t, where = task or item.task, f"sample {k} (id {item.id})"
        turns = tuple((rewrite(q, t, family, item.id, seed, f"{where} turn {n + 1}"), a)
                      for n, (q, a) in enumerate(item.turns))
        return dataclasses.replace(item, prompt=rewrite(item.prompt, t, family, item.id, seed, where), turns=turns)
    if kind == "test":
        sid = str(item["question_id"])
        t = task or item["task"]
        return {**item, "text": rewrite(str(item["text"]), t, family, sid, seed, f"record {k} (question_id {sid})")}
    sid = str(item["id"])
    if task is None:
        raise ValueError(f"record {k} (id {sid}): training records carry no task name; pass task=")
    conv = []
    for n, turn in enumerate(item["conversations"]):
        if not isinstance(turn, dict) or turn.get("from") != "human":
            conv.append(turn)
            continue
        value = str(turn["value"])
        prefix = "<image>\n" if value.startswith("<image>\n") else ""
        where = f"record {k} (id {sid})" + (f" turn {n // 2}" if n else "")
        conv.append({**turn, "value": prefix + rewrite(value[len(prefix):], task, family, sid, seed, where)})
    return {**item, "conversations": conv}


def apply_family(items: Iterable[Any], family: str, seed: int = 0, task: str | None = None) -> list:
    """Rewrite the format-instruction line of every item for ``family`` (new objects; inputs untouched).

    Items may be training ``Sample``s, released test records (``text``) or released training
    records (``conversations``; these need ``task``). ``10type`` draws per sample id.

    Every human turn is rewritten, not only the first: released records group several
    questions about one image into one conversation, each ending with the format line, so
    rewriting the first alone would train on a mix of families. All turns of one record get
    the same line (the draw is keyed by the record's id).
    """
    get_family(family)
    return [_apply_one(item, family, seed, task, k) for k, item in enumerate(items)]


def ours(family: str | None = None) -> list[tuple[str, str, str]]:
    """(family, task, text) of every template we wrote ourselves (for reports and docs)."""
    names = [get_family(family).name] if family else FAMILIES.names()
    return [(f, task, t.text) for f in names for task, ts in FAMILIES.get(f).templates.items() for t in ts if t.ours]
