"""Tasks in general: what a task is (``TaskSpec``), the ``TASKS`` registry, instruction families,
task orders, the scoring protocol sets and the knowledge matrix.

The tasks themselves live with their benchmark (``coin/benchmarks/<name>/tasks/``, or a plugin's
own file): one file each, ``TASKS.register``-ed on import. ``TASKS`` imports the built-in
benchmarks on its first lookup, so code in this layer can name a task without importing them.
"""

from coin.tasks.spec import TASKS, TaskSpec, Template, get_task, register_task
from coin.tasks.orders import ORDERS, order_name, resolve_order

__all__ = ["ORDERS", "TASKS", "TaskSpec", "Template", "get_task", "order_name", "register_task", "resolve_order"]
