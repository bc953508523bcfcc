"""CoIN's eight tasks, one file each, registered on import (CoIN-Synth uses the same tasks)."""

from coin.benchmarks.coin.tasks import gqa, grounding, imagenet, ocrvqa, scienceqa, textvqa, vizwiz, vqav2  # noqa: F401
