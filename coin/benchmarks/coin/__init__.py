"""CoIN: the released files (three instruction families), its eight tasks and the builders of its sources.

    benchmark.py  ``CoinBenchmark``: the released layout, the file sets, the instruction families
    tasks/        the eight tasks (ScienceQA, TextVQA, ImageNet, GQA, VizWiz, Grounding, VQAv2, OCRVQA)
    builders/     each source dataset's annotation files -> CoIN JSON (``coin data build``)
"""

from coin.benchmarks.coin import tasks  # noqa: F401  (register the tasks before the benchmark names them)
from coin.benchmarks.coin.benchmark import CoinBenchmark, bind_file_set

__all__ = ["CoinBenchmark", "bind_file_set"]
