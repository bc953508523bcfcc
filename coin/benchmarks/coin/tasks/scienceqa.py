"""ScienceQA: multiple-choice science questions answered with the option's letter."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import LETTER, from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

SPEC = TASKS.register(TaskSpec(
    name="ScienceQA", folder="ScienceQA", answer_form="letter", scorer="letter", instruction=LETTER, max_new_tokens=4,
    abbreviation="SQA",
    doc="multiple-choice science questions; the answer is the option's letter",
    protocols=(Protocol(
        name="paper", scorer="letter", normalizer=None, answers="letter", rule="option letter equals the answer's",
        deviations=("the first one-letter word was read as the letter, so the article 'a' read as option A; here cues, "
                    "brackets and standalone capitals are read and 'a cat' is not A",
                    "a letter that is none of the record's options, or an option's text instead of its letter, is a "
                    "format error (score 0, as before)")),),
    instructions={
        "diverse": from_paper(LETTER),
        "10type": written_by_us(
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
    },
))
