"""CoIN-Synth: CoIN's eight tasks on procedurally generated images, written into the cache.

    benchmark.py  ``SynthBenchmark``: where the generated files are, generated on first use
    generator/    the generator (a pure function of seed, task, split and index)
"""

from coin.benchmarks import coin  # noqa: F401  (CoIN's tasks)
from coin.benchmarks.synth.benchmark import SynthBenchmark

__all__ = ["SynthBenchmark"]
