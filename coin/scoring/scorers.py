"""Per-sample scorers for truth alignment, and the task score built from them.

A scorer is a pure function ``(output, record) -> Scored``: the model's raw output and
its CoIN test record in, the parsed answer, a score in [0, 1] and a tag out. Tags say
*why* a sample failed, which is CoIN's question (did the model forget the knowledge or
only the answer format?):

- ``correct``: the score is above 0;
- ``wrong_content``: the answer has the task's format but the wrong value;
- ``wrong_format``: the right value in the wrong format (a sentence around the right
  phrase, an option's text instead of its letter, an impossible box);
- ``unparsable``: nothing of the task's format was found (empty output included).

``score_task`` adds ``missing`` for a test record without an output.
Each scorer's docstring lists where it deliberately differs from the original CoIN code.

The text scorers take the answer normaliser as ``norm`` (default: the VQA rules), so one
scorer serves several protocols: which scorer, which normaliser and which answers a task
is scored with is declared once per task and protocol in ``coin.tasks.protocol_sets``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from coin.scoring.normalize import Normalizer, normalize_answer
from coin.scoring.parse import box_iou, option_letters, parse_box, parse_letter
from coin.registry import Registry
from coin.scoring.item import TestItem, as_item

__all__ = [
    "TAGS",
    "SCORERS",
    "Scored",
    "TaskScore",
    "score_sample",
    "score_task",
    "format_error_share",
    "parse_box",
    "box_iou",
]

TAGS = ("correct", "wrong_content", "wrong_format", "unparsable")
_TASK_TAGS = TAGS + ("missing",)


@dataclass(frozen=True)
class Scored:
    """One scored sample: what was read from the output, its score and why."""

    parsed: str | None
    score: float
    tag: str


Scorer = Callable[..., Scored]  # (output, record, norm=normalize_answer) -> Scored
SCORERS: Registry[Scorer] = Registry("scorer", builtins=("coin.benchmarks",))  # and the benchmarks' own

_UNPARSABLE = Scored(None, 0.0, "unparsable")
_MISSING = Scored(None, 0.0, "missing")


def score_sample(scorer: str, output: str, record: TestItem | Mapping) -> Scored:
    """Score one output with the scorer registered as ``scorer`` (a plain mapping is read by ``TestItem.from_row``)."""
    return SCORERS.get(scorer)(output, as_item(record))


# --------------------------------------------------------------------------- text


def _judge_text(pred: str, truths: Iterable[str], score: float) -> Scored:
    """Tag a normalised prediction given its score and the normalised ground truths.

    A miss whose prediction contains a ground truth as whole words ("the answer is
    yes") is a format error: the content is there, the short-answer format is not.
    """
    if score > 0:
        return Scored(pred, score, "correct")
    padded = f" {pred} "
    if any(t and f" {t} " in padded for t in truths):
        return Scored(pred, 0.0, "wrong_format")
    return Scored(pred, 0.0, "wrong_content")


def _vqa_accuracy(matches: int, n: int) -> float:
    """Soft accuracy of an answer given by ``matches`` of ``n`` annotators."""
    if n == 10:
        # Leave one annotator out, score min(matches among the other 9 / 3, 1), average.
        # The m matching annotators each see m - 1 matches, the others see m.
        return (matches * min((matches - 1) / 3, 1.0) + (n - matches) * min(matches / 3, 1.0)) / n
    return min(matches / min(3, n), 1.0)


_VQA10 = tuple(_vqa_accuracy(m, 10) for m in range(11))  # 0, .3, .6, .9, 1, 1, ...


@SCORERS.register
def vqa(output: str, record: TestItem, norm: Normalizer = normalize_answer) -> Scored:
    """VQA soft accuracy (TextVQA, VQAv2 style) after the normaliser ``norm`` (default: the VQA rules).

    With 10 ``answers`` this is the standard metric: the mean over the 10 leave-one-out
    subsets of min(#matches among the other 9 / 3, 1). With another number n of
    answers we use min(#matches / min(3, n), 1), so a single answer is exact match and
    three agreeing annotators give full credit. Without ``answers`` it is exact match of
    the normalised prediction against the normalised ``answer``.

    Tags: ``correct`` when the score is above 0 (some annotator gave this answer);
    ``wrong_format`` when a ground-truth answer appears as whole words inside the
    prediction ("the answer is yes"); empty output (after normalisation) is unparsable.

    ``norm`` is the answer normaliser (TextVQA's protocol: the m4c processor). Whether a
    task must have ten answers is its protocol's business (``coin.tasks.protocol_sets`` stops
    a run whose TextVQA records have none), not a silent choice made here.
    """
    pred = norm(output)
    if not pred:
        return _UNPARSABLE
    answers = record.answers
    if not answers:
        truth = norm(str(record.answer))
        return _judge_text(pred, (truth,), 1.0 if pred == truth else 0.0)
    truths = list(map(norm, answers))  # memoised: repeats cost a lookup
    matches = truths.count(pred)
    score = _VQA10[matches] if len(truths) == 10 else _vqa_accuracy(matches, len(truths))
    if score > 0:
        return Scored(pred, score, "correct")
    return _judge_text(pred, set(truths), 0.0)


def _exact(output: str, record: TestItem, norm: Normalizer = normalize_answer) -> Scored:
    pred = norm(output)
    if not pred:
        return _UNPARSABLE
    truth = norm(str(record.answer))
    if pred == truth:
        return Scored(pred, 1.0, "correct")
    # why it missed is judged on the VQA-normalised forms whatever the protocol's normaliser, so the
    # format-vs-knowledge split means the same under every protocol ("a fish." for "fish": format)
    miss = _judge_text(normalize_answer(output), (normalize_answer(str(record.answer)),), 0.0)
    return Scored(pred, 0.0, miss.tag)


@SCORERS.register
def exact(output: str, record: TestItem, norm: Normalizer = normalize_answer) -> Scored:
    """Exact match against the single ``answer`` after the normaliser ``norm``.

    ``wrong_format``: the answer appears as whole words inside a longer prediction.
    Empty output is unparsable. With ``norm`` = ``lower`` this is CoIN's own rule for
    VQAv2, VizWiz and OCR-VQA (case-insensitive equality), with ``gqa`` its GQA rule, with
    ``vqa`` (the default) coin's ``strict`` rule.
    """
    return _exact(output, record, norm)


@SCORERS.register
def substring(output: str, record: TestItem, norm: Normalizer = normalize_answer) -> Scored:
    """Credit when the class name contains the prediction or the prediction contains it (ImageNet).

    This is the original CoIN ImageNet rule, ``gt in pred or pred in gt``, on the
    normalised strings (the ``paper`` protocol uses ``strip``: case-sensitive, as the
    original). Its bug is fixed: an empty (or all-whitespace) prediction is unparsable
    and scores 0 (the original's ``"" in gt`` credited it); ``score_task`` pairs
    predictions with answers by id, not by list position. Misses are tagged as by
    ``exact`` (the class name as whole words inside the prediction after VQA
    normalisation, e.g. a case difference: ``wrong_format``).
    """
    pred = norm(output)
    if not pred:
        return _UNPARSABLE
    truth = norm(str(record.answer))
    if truth in pred or pred in truth:
        return Scored(pred, 1.0, "correct")
    miss = _judge_text(normalize_answer(output), (normalize_answer(str(record.answer)),), 0.0)
    return Scored(pred, 0.0, miss.tag)


@SCORERS.register
def classification(output: str, record: TestItem, norm: Normalizer = normalize_answer) -> Scored:
    """Class-name match against ``answer`` after VQA normalisation (ImageNet).

    Differences from the original CoIN code: it scored ``pred in gt``, so an empty
    prediction (and any substring of the class name) counted as correct; here an empty
    prediction is unparsable and only the whole normalised name matches. It also paired
    predictions with answers by list position; ``score_task`` pairs them by id.
    """
    return _exact(output, record, norm)


@SCORERS.register
def letter(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    """Multiple choice by option letter (ScienceQA); options are "A. text" lines of ``text``.

    Accepted: "B", "b", "B.", "(B)", "B) text", "B. text", "The answer is B",
    "Answer: B", "(B)" inside a sentence, and a standalone capital that is one of the
    options ("I think B."). A capital "A" or "I" followed by a word is read as a word,
    so "A cat" is never option A, except right after a cue ("The answer is A because
    ..."); a lower-case "a" after a cue counts only when no word follows it ("the
    answer is a." but not "the answer is a cat"). An output equal to one option's text
    scores 0 with tag ``wrong_format`` and that option's letter as ``parsed``: the
    content is right but the instruction asked for the letter. ``answer`` may be the
    letter or the option text. A letter that is not one of the record's options (a lone
    "E" on an A-D question) and a cue word inside another ("None of the choices." is not
    option S) are unparsable. ``norm`` is unused: options are matched after VQA
    normalisation.

    Differences from the original CoIN code: unless the output was exactly a letter or
    began with "X. ", it took the first one-character word, so the article "a" read as
    option A; a bare option text was read as whatever one-letter word it contained
    instead of being reported as a format error.
    """
    options = option_letters(record.text)
    letter, as_letter = parse_letter(output, options)
    if letter is None:
        return _UNPARSABLE
    truth = str(record.answer).strip()
    truth_letter, _ = parse_letter(truth, options)
    if not as_letter:
        return Scored(letter, 0.0, "wrong_format")
    if letter == truth_letter:
        return Scored(letter, 1.0, "correct")
    return Scored(letter, 0.0, "wrong_content")


@SCORERS.register
def grounding(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    """Referring-expression grounding: correct when IoU with ``answer_bbox`` is above 0.5.

    The box is four numbers anywhere in the output (see ``parse_box``); ``parsed`` shows
    it with two decimals. Fewer than four numbers: unparsable, score 0, and counted in
    the task's denominator. An inverted box (x2 < x1 or y2 < y1) scores 0 with tag
    ``wrong_format`` rather than being silently reordered; a box with coordinates outside
    [0, 1] is scored as given and tagged ``wrong_format`` when it misses.

    Differences from the original CoIN code: it read the box by slicing off the first
    and last character of the output, which cut the last digit of y2 whenever the
    closing bracket was missing, and failed on any text around the box. ``norm`` is unused.
    """
    box = parse_box(output)
    if box is None:
        return _UNPARSABLE
    parsed = "[" + ", ".join(f"{v:.2f}" for v in box) + "]"
    truth = parse_box(str(record.answer_bbox or record.answer))
    if truth is None:
        raise ValueError(f"record {record.question_id!r} has no readable answer box")
    if box[2] < box[0] or box[3] < box[1]:
        return Scored(parsed, 0.0, "wrong_format")
    if box_iou(box, truth) > 0.5:
        return Scored(parsed, 1.0, "correct")
    if min(box) < 0.0 or max(box) > 1.0:
        return Scored(parsed, 0.0, "wrong_format")
    return Scored(parsed, 0.0, "wrong_content")


# MiniGPT-v2's grounding script's number pattern: a number needs a decimal point, and 0, 0.0, 0.00
# and 1 are not numbers to it (a zero fraction must be followed by a digit 1-9)
_MINIGPT_NUMBER = re.compile(r"[1-9]\d*\.\d*|0\.\d*[1-9]\d*")


def _origin_box(record: TestItem) -> tuple[float, float, float, float] | None:
    """The truth box normalised to the image itself: ``origin_answer_bbox``; for a square image (``size``,
    or none given: CoIN-Synth) ``answer_bbox`` is that box too, since padding a square changes nothing."""
    if record.extra.get("origin_answer_bbox") is not None:
        return parse_box(str(record.extra["origin_answer_bbox"]))
    size = record.size
    if size is not None and not (len(size) == 2 and size[0] == size[1]):
        raise ValueError(f"record {record.question_id!r} has no origin_answer_bbox, which MiniGPT-v2's "
                         f"grounding protocol scores against; its image is {size}, not square, so answer_bbox "
                         "(normalised to the padded square) is another box")
    return parse_box(str(record.answer_bbox or record.answer))


@SCORERS.register
def grounding_minigpt(output: str, record: TestItem, norm: Normalizer | None = None) -> Scored:
    r"""MiniGPT-v2's grounding, as CoIN's ``ETrain/Eval/MiniGPT/eval_grounding.py`` scored it: IoU with
    ``origin_answer_bbox`` above 0.5.

    The truth is the box normalised to the image itself (MiniGPT-v2 resizes images without
    padding them), not ``answer_bbox`` (normalised to the padded square LLaVA sees); without it,
    a square image's ``answer_bbox`` is the same box (``_origin_box``). The prediction is the
    first four matches of the script's pattern ``[1-9]\d*\.\d*|0\.\d*[1-9]\d*``, kept as it is:
    ``0``, ``0.00`` and ``1`` do not match, so a box with such a coordinate is read from the numbers
    after it, or not at all. Fewer than four: unparsable, score 0, counted (the script skipped
    it and kept it in its denominator). ``norm`` is unused.
    """
    numbers = _MINIGPT_NUMBER.findall(output)
    if len(numbers) < 4:
        return _UNPARSABLE
    box = tuple(float(x) for x in numbers[:4])
    parsed = "[" + ", ".join(f"{v:.2f}" for v in box) + "]"
    truth = _origin_box(record)
    if truth is None:
        raise ValueError(f"record {record.question_id!r} has no readable answer box")
    if box_iou(box, truth) > 0.5:
        return Scored(parsed, 1.0, "correct")
    if box[2] < box[0] or box[3] < box[1] or max(box) > 1.0:
        return Scored(parsed, 0.0, "wrong_format")
    return Scored(parsed, 0.0, "wrong_content")


# ---------------------------------------------------------------------- task score


@dataclass
class TaskScore:
    """A task's score (mean per-sample score x 100), tag counts and per-sample rows."""

    score: float
    n: int
    tags: dict[str, int] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)


def score_task(scorer: str | Callable[[str, TestItem], Scored], outputs: Mapping,
               records: Sequence[TestItem | Mapping]) -> TaskScore:
    """Score every record against ``outputs`` (question_id -> raw output), matched by id.

    ``scorer`` is a registered scorer's name (with its default normaliser) or any
    ``(output, record) -> Scored`` function, e.g. a protocol's (``Protocol.scorer_fn``).
    A scorer with a ``score_task(outputs, records)`` method (``coin.benchmarks.ucit.captions``,
    ``coin.benchmarks.mllm_cl.submission``) scores the whole task itself, after the id checks below.

    Ids are compared as strings, so an int id in the test file matches its string key
    after a JSON round trip. A record without an output scores 0 with tag ``missing``;
    an output whose id is in no record raises ``ValueError``, as do duplicate record ids.
    ``records`` are ``TestItem``; a plain mapping (a user's own JSON record) is read by
    ``TestItem.from_row`` first.
    """
    fn = SCORERS.get(scorer) if isinstance(scorer, str) else scorer
    by_id = {str(k): v for k, v in outputs.items()}
    ids = [r.question_id if isinstance(r, TestItem) else r["question_id"] for r in records]  # as given, for the rows
    records = [as_item(r) for r in records]
    keys = [str(i) for i in ids]
    if len(set(keys)) != len(keys):
        dup = next(k for k, c in Counter(keys).items() if c > 1)
        raise ValueError(f"duplicate question_id {dup!r} in the test records")
    unknown = by_id.keys() - set(keys)
    if unknown:
        first = sorted(unknown)[0]
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ValueError(f"output for question_id {first!r}{more} matches no test record")
    if hasattr(fn, "score_task"):  # a corpus scorer (captions: BLEU, CIDEr) or an unscored task scores as a whole
        return fn.score_task(by_id, records)
    tags = dict.fromkeys(_TASK_TAGS, 0)
    samples: list[dict] = []
    total = 0.0
    for record, key, qid in zip(records, keys, ids):
        output = by_id.get(key)
        if output is None:
            s = _MISSING
        else:
            s = fn(output, record)
            total += s.score
        tags[s.tag] += 1
        samples.append({"question_id": qid, "output": output,
                        "parsed": s.parsed, "score": s.score, "tag": s.tag})
    n = len(samples)
    return TaskScore(score=100.0 * total / n if n else 0.0, n=n, tags=tags, samples=samples)


def format_error_share(tags: Mapping[str, int]) -> float | None:
    """Share of the model's errors that are format errors (wrong_format or unparsable).

    Errors are wrong_content + wrong_format + unparsable; ``missing`` samples are left
    out because a missing output says nothing about the model. None when no errors.
    """
    fmt = tags.get("wrong_format", 0) + tags.get("unparsable", 0)
    errors = fmt + tags.get("wrong_content", 0)
    return fmt / errors if errors else None


# the names these scorers had before they registered under their own
score_vqa = vqa
score_exact = exact
score_substring = substring
score_classification = classification
score_letter = letter
score_grounding = grounding
score_grounding_minigpt = grounding_minigpt
