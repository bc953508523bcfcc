"""Task orders, in one place, and the multi-task mixture.

An order is a name (``ORDERS``: "paper", "alphabet"), ``"shuffle:<seed>"`` (the eight
tasks in a seeded random order, so an order study can name its orders in a config), or an
explicit list of task names. The paper calls its default order its "random" one; coin
names it "paper". The multi-task baseline trains on every task's training data at once:
``mixture`` concatenates and shuffles it with a seed.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from coin.options import suggest
from coin.tasks.spec import TASKS, get_task

__all__ = ["ORDERS", "SHUFFLE", "mixture", "order_name", "order_problems", "resolve_order", "shuffled_order"]

T = TypeVar("T")
SHUFFLE = "shuffle:"

ORDERS: dict[str, tuple[str, ...]] = {
    # the paper's default order (the paper calls it its "random" order)
    "paper": ("ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA"),
    "alphabet": ("GQA", "Grounding", "ImageNet", "OCR-VQA", "ScienceQA", "TextVQA", "VizWiz", "VQAv2"),
}


def shuffled_order(seed: int, tasks: Sequence[str] | None = None) -> list[str]:
    """``tasks`` (default: the paper's eight) in a seeded random order."""
    out = list(tasks or ORDERS["paper"])
    random.Random(f"order-{seed}").shuffle(out)
    return out


def order_problems(order: object, key: str = "tasks.order") -> list[str]:
    """Why ``order`` is not a valid order (empty when it is), each naming ``key``."""
    if isinstance(order, str):
        if order.startswith(SHUFFLE):
            seed = order[len(SHUFFLE):]
            return [] if seed.lstrip("-").isdigit() else [f"{key}: {order!r} needs an integer seed, e.g. 'shuffle:3'"]
        if order not in ORDERS:
            return [f"{key}: unknown order {order!r}{suggest(order, ORDERS)}; choices: {', '.join(ORDERS)}, "
                    "'shuffle:<seed>' or a list of task names"]
        return []
    if not isinstance(order, (list, tuple)) or not order:
        return [f"{key} must be a name or a non-empty list of task names, got {order!r}"]
    problems = [f"{key}: {TASKS.unknown_message(n)}" for n in order if n not in TASKS]
    twice = sorted({str(n) for n in order if list(order).count(n) > 1})
    if twice:
        problems.append(f"{key} lists {', '.join(twice)} more than once")
    return problems


def resolve_order(order: str | Sequence[str]) -> list[str]:
    """The task list of a named, shuffled or explicit order; ``ValueError`` when invalid."""
    problems = order_problems(order)
    if problems:
        raise ValueError("; ".join(problems))
    if isinstance(order, str):
        return shuffled_order(int(order[len(SHUFFLE):])) if order.startswith(SHUFFLE) else list(ORDERS[order])
    for name in order:
        get_task(name)
    return list(order)


def order_name(tasks: Sequence[str]) -> str | None:
    """The name of the named order equal to ``tasks`` ("paper", "alphabet"), or None (for reports)."""
    found = [name for name, named in ORDERS.items() if tuple(tasks) == named]
    return found[0] if found else None


def mixture(train: dict[str, list[T]], seed: int, tasks: Sequence[str] | None = None) -> list[T]:
    """Every task's training samples in one seeded shuffle (the multi-task baseline's data)."""
    out = [s for t in (tasks or list(train)) for s in train[t]]
    random.Random(f"mixture-{seed}").shuffle(out)
    return out
