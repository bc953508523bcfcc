"""The CoIN tasks: names, answer forms, scorers, instruction lines and task orders."""

from coin.tasks.registry import ORDERS, TASKS, TaskSpec, get_task, resolve_order

__all__ = ["ORDERS", "TASKS", "TaskSpec", "get_task", "resolve_order"]
