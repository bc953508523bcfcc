"""OCR-VQA: questions about book covers (title, author, genre)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import SHORT, STRICT_EXACT, WHITESPACE, from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

SPEC = TASKS.register(TaskSpec(
    name="OCR-VQA", folder="OCRVQA", answer_form="phrase", scorer="exact", instruction=SHORT, max_new_tokens=8,
    abbreviation="OCR",
    doc="questions about book covers: title, author, genre",
    protocols=(
        Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                 rule="case-insensitive exact match against the one answer",
                 deviations=(WHITESPACE, "the original's skip of outputs containing 'Unanswerable' is dropped: it changes a score "
                             "only where an answer itself contains that word")),
        STRICT_EXACT,
    ),
    instructions={
        "diverse": from_paper("Condense your answer into a single word or concise phrase."),
        "10type": written_by_us(
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
    },
))
