"""What MLLM-CL's tasks share: the rule deviations every protocol lists, and coin's strict rule."""

from __future__ import annotations

from coin.benchmarks.mllm_cl import mathvista, scorers, submission  # noqa: F401  (register MLLM-CL's scorers)
from coin.tasks.rules import STRICT_EXACT

__all__ = ["COMMON", "STRICT_EXACT", "UNANSWERABLE"]

UNANSWERABLE = "an output containing 'Unanswerable' is wrong (MLLM-CL's rule)"
COMMON = (UNANSWERABLE, "a question without a prediction scores 0 and counts")
