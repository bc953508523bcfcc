"""The CoIN tasks: one file each, registered by name; instruction families and task orders.

A task file (``scienceqa.py``, ..., or a plugin's own file) declares a ``TaskSpec`` with
its folder, answer form, scorer, protocols, abbreviation and instruction lines, and calls
``register_task``. Importing this package registers the eight built-in tasks.
"""

from coin.tasks.spec import TASKS, TaskSpec, Template, get_task, register_task
from coin.tasks import gqa, grounding, imagenet, ocrvqa, scienceqa, textvqa, vizwiz, vqav2  # noqa: F401  (register)
from coin.tasks import mllm_cl, ucit  # noqa: F401  (the other benchmarks' tasks: coin.benchmarks)
from coin.tasks.orders import ORDERS, order_name, resolve_order

__all__ = ["ORDERS", "TASKS", "TaskSpec", "Template", "get_task", "order_name", "register_task", "resolve_order"]
