"""One entry per CoIN task: how its answers look, how they are scored, how long they are.

The same names serve the real benchmark and CoIN-Synth, so a run switches between them
by changing only the data root.
"""

from __future__ import annotations

from dataclasses import dataclass

from coin.registry import Registry

SHORT = "Answer the question using a single word or phrase."
LETTER = "Answer with the option's letter from the given choices directly."
GROUNDING = "Please provide the bounding box coordinate of the region this sentence describes: {}"


@dataclass(frozen=True)
class TaskSpec:
    """A CoIN task.

    ``instruction`` is the Original (Type1) format-instruction line; for Grounding it has
    a ``{}`` where the referring expression goes. ``folder`` is the task's directory in
    the released layout (``Instructions_Original/<folder>/{train,test}.json``).
    ``max_new_tokens`` is the floor of the task's generation limit: a run sizes the limit
    from the task's training answers in the model's tokens (``coin.engine.limits``), never
    below this, so a letter keeps 4 tokens and a box 32 while long titles get more.
    """

    name: str
    folder: str
    answer_form: str  # "letter" | "phrase" | "class" | "box"
    scorer: str
    instruction: str
    max_new_tokens: int  # the floor of the generation limit (see above)


TASKS: Registry[TaskSpec] = Registry("task")

for _spec in (
    TaskSpec("ScienceQA", "ScienceQA", "letter", "letter", LETTER, 4),
    TaskSpec("TextVQA", "TextVQA", "phrase", "vqa", SHORT, 8),
    TaskSpec("ImageNet", "ImageNet", "class", "classification", SHORT, 8),
    TaskSpec("GQA", "GQA", "phrase", "exact", SHORT, 8),
    TaskSpec("VizWiz", "VizWiz", "phrase", "exact", SHORT, 8),
    TaskSpec("Grounding", "Grounding", "box", "grounding", GROUNDING, 32),
    TaskSpec("VQAv2", "VQAv2", "phrase", "vqa", SHORT, 8),
    TaskSpec("OCR-VQA", "OCRVQA", "phrase", "exact", SHORT, 8),
):
    TASKS.register(_spec.name, _spec)

ORDERS: dict[str, tuple[str, ...]] = {
    # the paper's default ("random") order
    "paper": ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA"),
    "alphabet": ("GQA", "Grounding", "ImageNet", "OCR-VQA", "ScienceQA", "TextVQA", "VizWiz", "VQAv2"),
}


def get_task(name: str) -> TaskSpec:
    """The task registered as ``name`` (an unknown name lists the choices)."""
    return TASKS.get(name)


def resolve_order(order: str | list[str]) -> list[str]:
    """A named order ("paper", "alphabet") or an explicit list of task names."""
    if isinstance(order, str):
        if order not in ORDERS:
            raise KeyError(f"unknown task order {order!r}; choices: {', '.join(ORDERS)} or a list of task names")
        return list(ORDERS[order])
    for name in order:
        get_task(name)
    return list(order)
