"""Colours: name the colour of the picture (a plugin task in one file)."""
from coin.scoring.protocol import Protocol
from coin.tasks import TASKS, TaskSpec

TASKS.register(TaskSpec(
    name="Colours",
    folder="ColourFolder",
    answer_form="phrase",
    scorer="exact",
    instruction="Answer with the colour's name.",
    max_new_tokens=8,
    abbreviation="Col",
    doc="name the colour of the picture",
    protocols=(Protocol(name="paper", scorer="exact", normalizer="lower", answers="one",
                        rule="the colour's name, case-insensitive"),),
))
