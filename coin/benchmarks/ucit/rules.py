"""What UCIT's tasks share: the upper-cased exact match, coin's strict rule and the caption protocol."""

from __future__ import annotations

from coin.benchmarks.ucit import captions, normalize  # noqa: F401  (register the caption scorer and the upper normaliser)
from coin.scoring.protocol import Protocol
from coin.tasks.rules import STRICT_EXACT

__all__ = ["CAPTION", "PAPER_UPPER", "STRICT_EXACT"]

PAPER_UPPER = Protocol(name="paper", scorer="exact", normalizer="upper", answers="one",
                       rule="exact match after upper-casing (UCIT's rule)",
                       deviations=("surrounding whitespace is stripped (unconfirmed whether UCIT's code strips it)",
                                   "a question without a prediction scores 0 and counts"))
CAPTION = Protocol(name="paper", scorer="caption", normalizer=None, answers="references",
                   rule="mean of BLEU-1..4, METEOR, ROUGE-L, CIDEr x 100 (pycocoevalcap, PTB tokenizer)",
                   deviations=("a question without a prediction is scored as an empty caption",
                               "a test record missing from the reference file is scored against its own `answer`"))
