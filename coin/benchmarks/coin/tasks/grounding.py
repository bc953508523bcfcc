"""Grounding (RefCOCO, RefCOCO+, RefCOCOg): the box of the region a sentence describes.

Its instruction line embeds the referring expression (``{}``), so every family's lines
for it carry one ``{}`` too.
"""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.tasks.rules import from_paper, written_by_us
from coin.tasks.spec import TASKS, TaskSpec

GROUNDING = "Please provide the bounding box coordinate of the region this sentence describes: {}"

SPEC = TASKS.register(TaskSpec(
    name="Grounding",
    folder="Grounding",
    answer_form="box",
    scorer="grounding",
    instruction=GROUNDING,
    max_new_tokens=32,
    abbreviation="Grnd",
    doc="the bounding box of the region a referring expression describes",
    protocols=(Protocol(
        name="paper", scorer="grounding", normalizer=None, answers="box", rule="IoU with `answer_bbox` above 0.5",
        deviations=("the box was read by slicing off the first and last character, which cut a digit off y2; here four "
                    "numbers are found anywhere in the output",
                    "unparsable outputs score 0 and count (as before); an inverted box scores 0",
                    "MiniGPT-v2's own script scored against `origin_answer_bbox` with its own number pattern: protocol "
                    "`minigpt`, the paper column of model.name minigpt-v2 (eval.protocol.Grounding: minigpt elsewhere)")),
        Protocol(
        name="minigpt", scorer="grounding_minigpt", normalizer=None, answers="origin_box",
        rule="MiniGPT-v2's script (the paper column of model.name minigpt-v2): IoU with `origin_answer_bbox` above 0.5, "
             r"the box the first four numbers of `[1-9]\d*\.\d*|0\.\d*[1-9]\d*` (0, 0.00 and 1 are not numbers to it)",
        deviations=("a record without `origin_answer_bbox` is scored against `answer_bbox` when its image is square "
                    "(the same box; CoIN-Synth), and refused otherwise; the script failed on it",))),
    instructions={
        "diverse": from_paper(GROUNDING),
        "10type": written_by_us(
            "Give the bounding box [x1, y1, x2, y2] of the region described by: {}",
            "Locate the region this sentence refers to and output its box coordinates: {}",
            "Output the normalized bounding box of the object described here: {}",
            "Find the region matching this description and give its bounding box: {}",
            "What are the box coordinates of the region described as follows? {}",
            "Return the bounding box, as [x1, y1, x2, y2], of: {}",
            "Identify the region this expression describes and provide its bounding box coordinates: {}",
            "Provide the coordinates of the box around the region this phrase describes: {}",
            "Mark the region described by this sentence with a bounding box: {}",
            "Ground this description in the image and answer with its bounding box: {}",
        ),
    },
))
