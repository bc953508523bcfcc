"""UCIT (HiDe-LLaVA): six tasks, the caption scorer and the upper-case normaliser.

    benchmark.py  ``UcitBenchmark``: the released layout, reference files joined to records
    rules.py      what the tasks share: the upper-cased exact match, the caption protocol
    captions.py   the caption scorer (BLEU, METEOR, ROUGE-L, CIDEr)
    normalize.py  the ``upper`` normaliser
    tasks/        the six tasks
"""

from coin.benchmarks.ucit import tasks  # noqa: F401  (register the scorers and tasks)
from coin.benchmarks.ucit.benchmark import UcitBenchmark

__all__ = ["UcitBenchmark"]
