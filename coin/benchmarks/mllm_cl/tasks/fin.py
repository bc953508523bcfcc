"""Fin, an MLLM-CL domain task: finance (charts, tables, statements)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TaskSpec, register_task

# the one format line every Fin prompt ends with (coin.benchmarks.mllm_cl.benchmark replaces the original's gold-dependent one)
FIN_LINE = ("Answer with the option's letter if the question lists options, otherwise with a single word, number "
            "or phrase.")

PAPER = Protocol("paper", "fin", None, "one", "exact match after removing spaces and dots",
                 COMMON + ("the prompt's format suffix, chosen from the gold answer in the original, is replaced by "
                           "one fixed line (a leak fixed)",))

SPEC = register_task(TaskSpec(
    "Fin", "Fin", "phrase", "fin", FIN_LINE, 8,
    abbreviation="Fin",
    doc="MLLM-CL domain: finance (charts, tables, statements)",
    protocols=(PAPER, STRICT_EXACT),
))
