"""VizWiz: questions about photos taken by blind people; some cannot be answered."""

from __future__ import annotations

from coin.tasks.rules import PAPER_LOWER, SHORT, STRICT_EXACT, from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

SPEC = TASKS.register(TaskSpec(
    name="VizWiz", folder="VizWiz", answer_form="phrase", scorer="exact", instruction=SHORT, max_new_tokens=8,
    abbreviation="VizWiz",
    doc="questions about photos taken by blind people; some are unanswerable",
    test_files=("test.json", "val.json"),  # the original read val.json (scripts/*/Eval)
    protocols=(PAPER_LOWER, STRICT_EXACT),
    instructions={
        "diverse": from_paper("Provide a succinct response with a single word or phrase."),
        "10type": written_by_us(
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
    },
))
