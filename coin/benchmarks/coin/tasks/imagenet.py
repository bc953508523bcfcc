"""ImageNet: classify the image; the answer is the class name."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import SHORT, from_paper
from coin.tasks.spec import TASKS, TaskSpec

_EMPTY = "an empty prediction is wrong"
_ID = "paired with the answers by question id (the original paired by list position)"

SPEC = TASKS.register(TaskSpec(
    name="ImageNet",
    folder="ImageNet",
    answer_form="class",
    scorer="classification",
    instruction=SHORT,
    max_new_tokens=8,
    abbreviation="INet",
    doc="image classification; the answer is the class name",
    protocols=(
        Protocol(name="paper", scorer="substring", normalizer="strip", answers="one",
                 rule="credited when `answer in pred or pred in answer` "
                 "(case-sensitive)", deviations=(_EMPTY + " (the original's `'' in answer` credited it)", _ID)),
        Protocol(name="strict", scorer="classification", normalizer="vqa", answers="one",
                 rule="the whole class name, VQA-normalised, equals the "
                 "prediction", deviations=("coin's rule: a part of the name ('fish' for 'goldfish') or a sentence around "
                                           "it is not credited",)),
    ),
    instructions={
        "diverse": from_paper("Express your answer in a single word or a short, descriptive phrase."),
        "10type": from_paper(  # observed in the released 10Type files (SPEC section 7)
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
    },
))
