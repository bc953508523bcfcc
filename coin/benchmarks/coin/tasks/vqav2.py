"""VQAv2: open questions about everyday images, with ten annotator answers each."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import PAPER_LOWER, SHORT, from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

SPEC = TASKS.register(TaskSpec(
    name="VQAv2", folder="VQAv2", answer_form="phrase", scorer="vqa", instruction=SHORT, max_new_tokens=8,
    abbreviation="VQAv2",
    doc="open questions about everyday images; ten annotator answers each",
    test_files=("test.json", "val.json"),  # the original read val.json (scripts/*/Eval)
    protocols=(
        PAPER_LOWER,
        Protocol(name="strict", scorer="vqa", normalizer="vqa", answers="ten_or_one",
                 rule="VQA soft accuracy over `answers` when present "
                 "(CoIN-Synth), else exact match; VQA normalisation",
                 deviations=("coin's rule: the standard VQAv2 metric where ten answers exist",)),
    ),
    instructions={
        "diverse": from_paper(SHORT),
        "10type": written_by_us(
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
    },
))
