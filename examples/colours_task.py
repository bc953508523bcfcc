"""Colours: name the colour of the picture (a plugin task in one file)."""
from coin.scoring.protocol import Protocol
from coin.tasks import TaskSpec, register_task

register_task(TaskSpec(
    "Colours", "ColourFolder", "phrase", "exact", "Answer with the colour's name.", 8,
    abbreviation="Col",
    doc="name the colour of the picture",
    protocols=(Protocol("paper", "exact", "lower", "one", "the colour's name, case-insensitive"),),
))
