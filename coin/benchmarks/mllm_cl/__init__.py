"""MLLM-CL: the domain (``mllm-dcl``) and ability (``mllm-acl``) streams, nine tasks and their scorers.

    benchmark.py   ``DomainBenchmark`` and ``AbilityBenchmark``
    rules.py       what the tasks share
    scorers.py     the domain tasks' scorers; ``mathvista.py`` MathVista's; ``submission.py`` the unscored
    tasks/         the nine tasks
"""

from coin.benchmarks.mllm_cl import tasks  # noqa: F401  (register the scorers and tasks)
from coin.benchmarks.mllm_cl.benchmark import AbilityBenchmark, DomainBenchmark

__all__ = ["AbilityBenchmark", "DomainBenchmark"]
