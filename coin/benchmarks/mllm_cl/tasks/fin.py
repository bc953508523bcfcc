"""Fin, an MLLM-CL domain task: finance (charts, tables, statements)."""

from __future__ import annotations

from coin.scoring.protocol import Protocol
from coin.benchmarks.mllm_cl.rules import COMMON, STRICT_EXACT
from coin.tasks.spec import TASKS, TaskSpec

# the one format line every Fin prompt ends with (coin.benchmarks.mllm_cl.benchmark replaces the original's gold-dependent one)
FIN_LINE = ("Answer with the option's letter if the question lists options, otherwise with a single word, number "
            "or phrase.")

PAPER = Protocol(name="paper", scorer="fin", normalizer=None, answers="one",
                 rule="exact match after removing spaces and dots",
                 deviations=COMMON + ("the prompt's format suffix, chosen from the gold answer in the original, is replaced by "
                                      "one fixed line (a leak fixed)",))

SPEC = TASKS.register(TaskSpec(
    name="Fin", folder="Fin", answer_form="phrase", scorer="fin", instruction=FIN_LINE, max_new_tokens=8,
    abbreviation="Fin",
    doc="MLLM-CL domain: finance (charts, tables, statements)",
    protocols=(PAPER, STRICT_EXACT),
))
