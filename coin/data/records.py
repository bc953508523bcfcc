"""The one validator of CoIN's JSON records, shared by the loader and ``coin data check``.

Training records: ``{"id", "image", "conversations": [{"from": "human", "value": ...},
{"from": "gpt", "value": ...}, ...]}``, every turn pair human then gpt, none empty. Test
records: ``{"question_id", "image", "text"}`` and the answer keys its task's scoring protocols
read (``answer_keys``: ``answer``, not empty, for most tasks; for Grounding ``answer_bbox``, four
numbers in [0, 1]; see ``coin.tasks.protocol_sets.answer_keys``), text not empty. In both, ids are
unique within a file and the image path is relative and stays inside the image root (checked
lexically, so a dataset folder symlinked into the root is fine).

``image`` may be left out (or null): a text-only record, as about half of ScienceQA's questions
are. LLaVA's own loader and its ScienceQA evaluation take such a record without an image, and so
does every coin backbone (a prompt without image tokens); its ``image`` is None here.

``check_records`` walks a file's records and yields one ``Checked`` per record: the parsed
record or the problem, with a ``where`` that names the file, the index and the id. The loader
(``coin.data.coin_json``) raises on the problems; the check (``coin.benchmarks.check``) lists them.
Both read the same verdicts and the same words, so whatever the check passes the run accepts.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from typing import Iterator

from coin.errors import RecordError

TRAIN_KEYS = ("id", "conversations")  # "image" is optional: a text-only record has none
TEST_KEYS = ("question_id", "text")  # then the answer keys the task's protocols read (``answer_keys``)
ANSWER_KEYS = ("answer",)  # what a test record's protocols read unless a caller names others
ID_KEYS = {"train": "id", "test": "question_id"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class TrainRecord:
    """A valid training record: its id, image path (normalised, relative; None: text-only) and
    (question, answer) turns."""

    id: str
    image: str | None
    turns: tuple[tuple[str, str], ...]  # the first is the prompt and its answer

    @property
    def questions(self) -> list[str]:
        """Every human turn, in order (what an instruction family rewrites)."""
        return [q for q, _ in self.turns]


@dataclass(frozen=True, slots=True)
class TestRecord:
    """A valid test record: its question id, image path (normalised, relative; None: text-only) and
    stripped text."""

    __test__ = False  # not a pytest test class when a test imports it

    question_id: str
    image: str | None
    text: str


@dataclass(slots=True)
class Checked:
    """One record's verdict: ``record`` when it is valid, else ``problem``; ``where`` names it."""

    index: int
    where: str  # "<file> record <k> (id <id>)"
    raw: object
    record: TrainRecord | TestRecord | None = None
    problem: str | None = None

    @property
    def message(self) -> str:
        """``where: problem`` (the line both the check and the loader print)."""
        return f"{self.where}: {self.problem}"


def image_path(rel: object) -> str:
    """The normalised relative path of an image; ``RecordError`` when it is absolute or escapes the root."""
    if not isinstance(rel, str) or not rel:
        raise RecordError(f"'image' must be a non-empty string, got {rel!r}")
    if rel.startswith(("/", "\\")) or os.path.isabs(rel):
        raise RecordError(f"image path {rel!r} is absolute; it must be relative to the image root")
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        raise RecordError(f"image path {rel!r} escapes the image root")
    return norm


def record_image(rec: dict) -> str | None:
    """A record's normalised image path, or None for a text-only record (no ``image`` key, or null)."""
    return None if rec.get("image") is None else image_path(rec["image"])


def strip_image_tag(value: object) -> str:
    """A human turn's text without LLaVA's ``<image>`` placeholder."""
    return str(value).replace("<image>\n", "").replace("<image>", "").strip()


def conversation_turns(conv: object) -> tuple[tuple[str, str], ...]:
    """(question, answer) pairs of a LLaVA conversation: human/gpt alternating, none empty.

    Released CoIN files group several questions about one image into one multi-turn
    conversation; every turn is kept and trained on, so every turn is checked.
    """
    if not isinstance(conv, list) or len(conv) < 2:
        raise RecordError("'conversations' needs a human turn and a gpt turn")
    if len(conv) % 2:
        raise RecordError(f"'conversations' has {len(conv)} turns; it needs human/gpt turn pairs")
    pairs = []
    for t in range(0, len(conv), 2):
        human, gpt = conv[t], conv[t + 1]
        if not (isinstance(human, dict) and human.get("from") == "human" and isinstance(gpt, dict)
                and gpt.get("from") == "gpt"):
            raise RecordError(f"conversation turn {t // 2} must be a 'human' turn then a 'gpt' turn")
        q, a = strip_image_tag(human.get("value", "")), str(gpt.get("value", "")).strip()
        if not q or not a:
            raise RecordError(f"empty {'prompt' if not q else 'answer'} in turn {t // 2}")
        pairs.append((q, a))
    return tuple(pairs)


def box_problem(value: object) -> str | None:
    """Why ``value`` is not a grounding box of four numbers in [0, 1] (None when it is one)."""
    nums = _NUMBER.findall(str(value))
    if len(nums) != 4 or not all(0.0 <= float(n) <= 1.0 for n in nums):
        return f"answer_bbox {value!r} is not four numbers in [0, 1]"
    return None


def parse_train(rec: dict) -> TrainRecord:
    """A training record's content checked (keys and id are checked by ``check_records``)."""
    turns = conversation_turns(rec["conversations"])
    return TrainRecord(str(rec["id"]), record_image(rec), turns)


def answer_problem(key: str, value: object) -> str | None:
    """Why a test record's answer key ``key`` holds no usable ``value`` (None when it does).

    ``answer`` must not be empty and ``answer_bbox`` must be a box; any other key a protocol
    reads (a plugin's) need only be there.
    """
    if key == "answer_bbox":
        return box_problem(value)
    if key == "answer" and not str(value).strip():
        return "empty 'answer'"
    return None


def parse_test(rec: dict, answer_keys: tuple[str, ...] = ANSWER_KEYS) -> TestRecord:
    """A test record's content checked; ``answer_keys``: what its task's protocols read (all present)."""
    text = str(rec["text"]).strip()
    if not text:
        raise RecordError("empty 'text'")
    for key in answer_keys:
        if (problem := answer_problem(key, rec[key])) is not None:
            raise RecordError(problem)
    return TestRecord(str(rec["question_id"]), record_image(rec), text)


def check_records(rows: list, split: str, source: str,
                  answer_keys: tuple[str, ...] = ANSWER_KEYS) -> Iterator[Checked]:
    """One verdict per record of a file's ``rows`` (``split``: "train" or "test"), in order.

    A record must be an object with every key of its kind (a test record: ``TEST_KEYS`` and the
    ``answer_keys`` its task's protocols read) and an id not seen before in the file (a
    duplicate's id stays taken, so a third copy is named too); then its content is checked
    (``parse_train`` / ``parse_test``). ``source`` names the file in ``where``.
    """
    if split not in ID_KEYS:
        raise ValueError(f"split must be one of {', '.join(ID_KEYS)}, got {split!r}")
    keys = TRAIN_KEYS if split == "train" else TEST_KEYS + tuple(k for k in answer_keys if k not in TEST_KEYS)
    id_key = ID_KEYS[split]
    needed = set(keys)
    seen: set[str] = set()
    for k, rec in enumerate(rows):
        where = f"{source} record {k}"
        if not isinstance(rec, dict):
            yield Checked(k, where, rec, problem=f"expected an object, got {type(rec).__name__}")
            continue
        if id_key in rec:
            where += f" ({id_key} {rec[id_key]})"
        if not rec.keys() >= needed:
            missing = next(key for key in keys if key not in rec)
            yield Checked(k, where, rec, problem=f"missing key {missing!r}")
            continue
        rid = str(rec[id_key])
        if rid in seen:
            yield Checked(k, where, rec, problem=f"duplicate {id_key} {rid!r}")
            continue
        seen.add(rid)
        try:
            parsed = parse_train(rec) if split == "train" else parse_test(rec, tuple(answer_keys))
        except RecordError as e:
            yield Checked(k, where, rec, problem=str(e))
            continue
        yield Checked(k, where, rec, record=parsed)


def problems_message(problems: list[str], source: str, limit: int = 20) -> str:
    """One error text for a file's bad records: the one line, or a count and ``limit`` lines."""
    if len(problems) == 1:
        return problems[0]
    more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    return f"{source}: {len(problems)} bad records\n  " + "\n  ".join(problems[:limit] + more)
