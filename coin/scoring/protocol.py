"""One scoring protocol: which scorer, which normaliser and which answers score a task under one name.

Task files declare their protocols with this dataclass (``coin/tasks/<task>.py``); the
machinery that picks one per report column, scores and prints the protocol card lives in
``coin.tasks.protocol_sets``. This module sits below both, so the arrow is one-way: a task file
imports ``Protocol``, and the machinery finds a task's protocols through ``coin.tasks``.
It imports no torch and nothing of ``coin.tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping

from coin.scoring.normalize import NORMALIZERS, get_normalizer
from coin.scoring.scorers import SCORERS, Scored

__all__ = ["ANSWER_SOURCES", "SOURCE_KEYS", "Protocol"]

# where a protocol's ground truth comes from (the card's "answers" column)
ANSWER_SOURCES = {
    "one": "one answer (the test record's `answer`)",
    "ten": "ten answers (`answers`: joined from the official annotation file, or CoIN-Synth's own)",
    "ten_or_one": "ten answers where the record has `answers`, else the one `answer`",
    "letter": "one option letter (`answer`), options read from the prompt",
    "box": "a box (`answer_bbox`)",
    "origin_box": "a box on the image itself (`origin_answer_bbox`; `answer_bbox` where the image is square)",
}
# the test-record keys a protocol of each answer source reads, so a test record must hold them
# (``coin.data.records``: besides question_id and text); ten answers are joined from a file before
# the run and checked there (``coin.data.answers``), so "ten" asks the record for none
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "one": ("answer",),
    "ten": (),
    "ten_or_one": ("answer",),
    "letter": ("answer",),
    "box": ("answer_bbox",),
    "origin_box": ("answer_bbox",),
}


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """How one task is scored under one protocol name, declared by keyword
    (``Protocol(name="paper", scorer="exact", normalizer="lower", answers="one", rule="...")``).

    ``answers`` is a key of ``ANSWER_SOURCES``; ``"ten"`` means every test record must
    carry ten ``answers`` before the run starts. ``reads`` (from the answer source,
    ``SOURCE_KEYS``) are the test-record keys its scorer reads, which a task's records must
    hold. ``deviations`` are the deliberate differences from the original CoIN code, one line each.
    """

    name: str
    scorer: str
    normalizer: str | None
    answers: str
    rule: str
    deviations: tuple[str, ...] = ()

    @property
    def reads(self) -> tuple[str, ...]:
        """The test-record keys this protocol's scorer reads besides question_id and text (``answer``,
        ``answer_bbox``): its answer source's."""
        return SOURCE_KEYS[self.answers]

    def scorer_fn(self) -> Callable[[str, Mapping], Scored]:
        """``(output, record) -> Scored`` with this protocol's normaliser bound."""
        fn = SCORERS.get(self.scorer)
        return fn if self.normalizer is None else partial(fn, norm=get_normalizer(self.normalizer))

    def check(self) -> list[str]:
        """Problems with this declaration (unknown scorer, normaliser or answer source), each naming its field."""
        problems = []
        if self.scorer not in SCORERS:
            problems.append(f"scorer: {SCORERS.unknown_message(self.scorer)}")
        if self.normalizer is not None and self.normalizer not in NORMALIZERS:
            problems.append(f"normalizer: {NORMALIZERS.unknown_message(self.normalizer)}")
        if self.answers not in ANSWER_SOURCES:
            problems.append(f"answers: unknown answer source {self.answers!r}; choices: {', '.join(ANSWER_SOURCES)}")
        elif self.answers not in SOURCE_KEYS:
            problems.append(f"answers: answer source {self.answers!r} declares no record keys it reads "
                            "(coin.scoring.protocol.SOURCE_KEYS)")
        if isinstance(self.deviations, str):
            problems.append("deviations must be a tuple of lines, got one string")
        return problems
