"""GQA: compositional questions about a scene, answered with a word or a short phrase."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import SHORT, STRICT_EXACT, WHITESPACE, from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

SPEC = TASKS.register(TaskSpec(
    name="GQA", folder="GQA", answer_form="phrase", scorer="exact", instruction=SHORT, max_new_tokens=8,
    abbreviation="GQA",
    doc="compositional questions about a scene; a word or a short phrase",
    protocols=(
        Protocol(name="paper", scorer="exact", normalizer="gqa", answers="one",
                 rule="exact match after lower-casing and removing trailing periods",
                 deviations=(WHITESPACE, "a question without a prediction counts as wrong (the original averaged over the "
                             "predictions it had)")),
        STRICT_EXACT,
    ),
    instructions={
        "diverse": from_paper("Respond to the question briefly, using only one word or a phrase."),
        "10type": written_by_us(
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
    },
))
