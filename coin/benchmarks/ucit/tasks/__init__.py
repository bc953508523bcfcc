"""UCIT's six tasks (HiDe-LLaVA): one file each, registered on import. The benchmark is ``coin.benchmarks.ucit.benchmark``."""

from coin.benchmarks.ucit.tasks import arxivqa, clevr_math, flickr30k, iconqa, imagenet_r, vizwiz_caption  # noqa: F401
