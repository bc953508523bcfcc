"""Benchmarks: one folder each, holding the stream's spec, tasks, scorers, orders and data preparation.

    spec.py      ``BenchmarkSpec`` and the ``BENCHMARKS`` registry
    layout.py    where a config's benchmark keeps its files (the spec that ``data.benchmark`` names)
    load.py      ``verify_data`` and ``load_benchmark``: the benchmark looked up once, its records read once
    check.py     ``coin data check``: every file, record and image, listed
    coin/        CoIN: the released files, three instruction families, the eight tasks, source builders
    synth/       CoIN-Synth: CoIN's tasks generated into the cache (its generator)
    ucit/        UCIT (HiDe-LLaVA): six tasks, the caption scorer, the upper-case normaliser
    mllm_cl/     MLLM-CL's domain (``mllm-dcl``) and ability (``mllm-acl``) streams, nine tasks, their scorers

A plugin benchmark is one file or folder of the same shape (``examples/benchmark_plugin/``).

``data.benchmark`` names one; ``coin.benchmarks.layout`` asks it where the files are. A run
config's task order is bound to the benchmark here (``bind_order``): for a benchmark other
than CoIN, ``tasks.order: paper`` (the default) is its own paper order, written into the
config as the explicit list of its tasks.
"""

from __future__ import annotations

from typing import Any

from coin.benchmarks.spec import BENCHMARKS, BenchmarkSpec, TaskSource, get_benchmark, owner, register_benchmark
from coin.benchmarks import coin, mllm_cl, synth, ucit  # noqa: F401  (register the built-in benchmarks)
from coin.tasks.orders import SHUFFLE, shuffled_order

__all__ = ["BENCHMARKS", "BenchmarkSpec", "TaskSource", "bind_order", "get_benchmark", "owner",
           "register_benchmark"]


def bind_order(cfg: Any) -> list[str]:
    """Check ``tasks.order`` against ``data.benchmark`` and, for a benchmark with its own orders, bind it.

    CoIN and CoIN-Synth keep the order as written (``coin.tasks.orders`` resolves it); a task
    of another benchmark is refused with the benchmark to set. For the other benchmarks a
    named order (``paper``) or ``shuffle:<seed>`` becomes the explicit list of their tasks,
    so the rest of coin (and the stored ``config.yaml``) sees plain task names.
    Returns the problems, each naming its key.
    """
    name = cfg.data.benchmark
    if name not in BENCHMARKS:
        return []  # named by the data section's own check (coin.benchmarks.layout.config_problems)
    spec = get_benchmark(name)
    order = cfg.tasks.order
    if spec.open_tasks:
        if isinstance(order, (list, tuple)):
            return [f"tasks.order: {t} is a task of benchmark {owner(t)!r}; set data.benchmark: {owner(t)}"
                    for t in order if isinstance(t, str) and owner(t) is not None]
        return []
    if isinstance(order, str) and order in spec.orders:
        cfg.tasks.order = list(spec.orders[order])
    elif isinstance(order, str) and order.startswith(SHUFFLE) and order[len(SHUFFLE):].lstrip("-").isdigit():
        cfg.tasks.order = shuffled_order(int(order[len(SHUFFLE):]), spec.orders[spec.default_order()])
    elif isinstance(order, str):
        return [f"tasks.order: benchmark {name!r} has the orders {', '.join(spec.orders)} (or 'shuffle:<seed>' "
                f"or a list of its tasks: {', '.join(spec.tasks)}), got {order!r}"]
    elif isinstance(order, (list, tuple)):
        return [f"tasks.order: {t} is not a task of benchmark {name!r}; its tasks: {', '.join(spec.tasks)}"
                for t in order if isinstance(t, str) and t not in spec.tasks]
    return []
