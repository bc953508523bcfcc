"""``TestItem``: one loaded test record, the type every scorer, protocol and judge prompt reads.

Training samples are ``coin.data.sample.Sample``; a test record is this frozen dataclass, built by
the loader (``coin.data.coin_json.as_test_records``) from a released JSON row. It lives here, in
the scoring layer, so that scorers (below the data layer) can name it; ``coin.data.sample``
re-exports it beside ``Sample``. Raw JSON rows that are not loaded records (the data check's,
the builders', answer files) stay dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["TestItem", "as_item"]


# the typed fields of a test record, in the order ``TestItem`` declares them
_TYPED = ("question_id", "task", "text", "image_path", "answer", "answers", "answer_bbox", "size")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class TestItem:
    """One loaded test record: what a model is asked (``text``, ``image_path``) and what it is scored against.

    The typed fields are what coin itself reads; every other key of the released record (UCIT's
    joined caption ``references``, MLLM-CL's ``image`` and ``answer_type``, MiniGPT-v2's
    ``origin_answer_bbox``, a plugin's own keys) is kept, read-only, in ``extra``. ``keys`` is
    the record's key order (what ``to_row`` writes back, so a written record is the released one
    plus what coin added). An optional field left out of the record is None and not in ``keys``.

    ``from_row`` builds one from a JSON object; ``dataclasses.replace`` adds or changes a field
    (a field set to a value and not yet in ``keys`` is appended to it, as a dict would append a key).
    """

    __test__ = False  # not a pytest test class when a test imports it

    question_id: str
    task: str = ""
    text: str = ""
    image_path: str | None = None  # absolute path after loading; None: text-only
    answer: Any = None  # the released answer (a string; a letter; MLLM-CL's APP: None)
    answers: list[str] | None = None  # ten human answers (TextVQA, joined from ``data.answers``; CoIN-Synth)
    answer_bbox: Any = None  # grounding: the box, as released ("[x1, y1, x2, y2]" or a list)
    size: Any = None  # grounding: the image's [width, height]
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        extra = self.extra if isinstance(self.extra, MappingProxyType) else MappingProxyType(dict(self.extra))
        object.__setattr__(self, "extra", extra)
        keys = list(self.keys) or ["question_id", "task", "text"]
        for name in _TYPED:  # a field given a value and not in the row yet is appended, as a dict key would be
            if name not in keys and getattr(self, name) not in (None, ""):
                keys.append(name)
        keys += [k for k in extra if k not in keys]
        object.__setattr__(self, "keys", tuple(k for k in keys if k in extra or k in _TYPED))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "TestItem":
        """A test item from a JSON record (a released test record, a prediction row, a user's own).

        ``question_id`` is read as a string (ids are compared as strings; "" when the row has none, as a
        one-off record handed to a scorer or a judge prompt may); ``text`` as a string; the
        other typed keys as they are; every other key goes to ``extra``. ``to_row`` gives the row back.
        """
        typed = {k: row[k] for k in _TYPED if k in row}
        typed["question_id"] = str(row.get("question_id", ""))
        if "text" in typed:
            typed["text"] = str(typed["text"])
        return cls(**typed, extra={k: v for k, v in row.items() if k not in _TYPED}, keys=tuple(row))

    def has(self, key: str) -> bool:
        """Whether the record holds ``key`` (a typed field present in the row, or an ``extra`` key)."""
        return key in self.keys

    def to_row(self) -> dict[str, Any]:
        """The record as a JSON object, keys in the order it was read (and added) in."""
        return {k: (getattr(self, k) if k in _TYPED else self.extra[k]) for k in self.keys}

    def without(self, key: str) -> "TestItem":
        """A copy without ``key`` (a typed field becomes None, an ``extra`` key is dropped)."""
        keys = tuple(k for k in self.keys if k != key)
        if key in _TYPED:
            return replace(self, **{key: None}, keys=keys) if key != "question_id" else self
        return replace(self, extra={k: v for k, v in self.extra.items() if k != key}, keys=keys)


def as_item(record: "TestItem | Mapping[str, Any]") -> TestItem:
    """``record`` as a ``TestItem``: a plain mapping (a user's own JSON record) is read by ``TestItem.from_row``."""
    return record if isinstance(record, TestItem) else TestItem.from_row(record)
