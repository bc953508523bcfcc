"""CoIN's findings, measured: one row per finding from the method sweep's and the study sweeps' run folders.

``coin findings --methods runs/methods --studies runs/studies`` reads ``matrix.json`` of the
runs the README's commands make (``runs/methods/lora-s0`` …, ``runs/studies/<study>/<config>-s<seed>``)
and writes, per finding, the paper's number (LLaVA-1.5-7B, the table it comes from), ours
(mean ± sample std over the seeds found), a test of the difference over seeds (``coin.stats``)
and a verdict:

- **reproduced**: the difference has the paper's sign and p < ``alpha`` (0.05);
- **not reproduced: the opposite holds**: p < ``alpha`` with the other sign;
- **inconclusive at n seeds**: p ≥ ``alpha``;
- **no test: zero variance** / **no test: fewer than two values**: the test is undefined (``coin.stats``):
  every group it compares gave the same number at each seed, or a group has one seed. Equal numbers over
  seeds are no evidence of a difference, however far apart the groups' means;
- **partial**: some configurations it reads have runs and others have none, or fewer seeds than the most
  complete one (a study still running, or copied half-way): the test column shows what the runs so far give,
  the verdict waits for the rest and names what is missing;
- **not run**: a group it needs has no runs.

A finding without a direction ("the order matters") is reproduced when the groups differ at
p < ``alpha``; one that claims no difference ("Diverse barely matters") is *consistent* when no
difference shows at p < ``alpha``, which at three seeds is weak evidence, and says so.

Only like is compared with like (``coin.report.comparable``): the seeds of a configuration may differ in
their seeds alone (``seed``, CoIN-Synth's ``data.synth.seed``), and the configurations a finding compares
only in the variable it studies (``Finding.varies``: the task order, the volume, the rank...). Anything else
(other tasks, another data size or recipe) stops the command with every key that differs
(``IncomparableRuns``). A run folder without ``config.yaml`` is compared by its tasks alone. The table
says what its ± and tests cover: training seeds only (CoIN-Synth's data fixed), or data seeds too
(``coin sweep --data-seeds``).

Metrics are the paper protocol's (``matrix``), or the knowledge matrix's (``knowledge``) where
the finding is about knowledge. A finding's claim is directional (the paper says which way it
goes), and each test is two-sided, so "reproduced" asks for the paper's direction at p < 0.05
on a two-sided test. Where a finding picks a point from the data (the volume study's peak),
the test is optimistic and the row says so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from coin import stats
from coin.errors import IncomparableRuns
from coin.metrics import seed_summary
from coin.report.comparable import Setup, study_problems, varies_data
from coin.report.format import fmt
from coin.report.load import load_run, run_metrics, upgraded

__all__ = ["FINDINGS", "Finding", "Row", "findings", "findings_markdown"]

ALPHA = 0.05


class Runs:
    """The seeds of each configuration, read once: ``runs("methods", "lora")`` -> matrix.json dicts."""

    def __init__(self, methods: str | os.PathLike, studies: str | os.PathLike):
        self.roots = {"methods": Path(methods), "studies": Path(studies)}
        self._cache: dict[tuple[str, str], list[dict]] = {}
        self.setups: dict[tuple[str, str], list[Setup]] = {}  # per configuration, what its runs must share
        self.used: list[int] = []  # seeds per configuration read since the last reset
        self.read: list[tuple[str, str]] = []  # the configurations read since the last reset

    def __call__(self, where: str, config: str) -> list[dict]:
        key = (where, config)
        if key not in self._cache:
            root = self.roots["methods" if where == "methods" else "studies"]
            folder = root if where == "methods" else root / where
            found = sorted(folder.glob(f"{config}-s*/matrix.json")) if folder.is_dir() else []
            found = [p for p in found if p.parent.name[len(config) + 2:].isdigit()]  # "r8-s0", not "r8-extra-s0"
            runs = [load_run(p.parent) for p in found]
            self._cache[key] = [mj for mj, _ in runs]
            self.setups[key] = [Setup.of(f"{where}/{p.parent.name}", upgraded(cfg), mj["tasks"])
                                for p, (mj, cfg) in zip(found, runs)]
        self.used.append(len(self._cache[key]))
        self.read.append(key)
        return self._cache[key]

    def reset(self) -> None:
        self.used, self.read = [], []

    def problems(self, varies: Sequence[str]) -> list[str]:
        """Where the configurations read since the last reset are not like with like: within one, any key
        but the seeds; between them, any key but those under ``varies``."""
        groups = [self.setups[k] for k in dict.fromkeys(self.read) if self.setups.get(k)]
        within = {k: line for g in groups for k, line in study_problems(g).items()}
        between = study_problems([s for g in groups for s in g], varies)
        return [*within.values(), *(line for k, line in between.items() if k not in within)]  # a key named once

    def missing(self) -> list[str]:
        """What the configurations read since the last reset lack against the most complete of them: "r8 has no
        runs", "r64 has 2 of 3 seeds" (empty when none has runs, or all have as many)."""
        counts = dict(zip(self.read, self.used))
        most = max(counts.values(), default=0)
        return [f"{config} has no runs" if not n else f"{config} has {n} of {most} seeds"
                for (_, config), n in counts.items() if n < most]

    def spread(self) -> str:
        """What the ± of the configurations read since the last reset covers: "training and data" seeds,
        "training" seeds only, "mixed", or "" (no configuration with seeds whose configs are known)."""
        kinds = {varies_data(self.setups[k]) for k in dict.fromkeys(self.read) if len(self.setups.get(k, [])) > 1}
        kinds.discard(None)
        return "" if not kinds else "mixed" if len(kinds) > 1 else "training and data" if kinds.pop() else "training"

    def folders(self, where: str, config: str) -> str:
        folder = self.roots["methods"] if where == "methods" else self.roots["studies"] / where
        return str(folder / f"{config}-s*")


def metric(mj: dict, key: str, column: str | None = None) -> float | None:
    """MAA/BWT/ACC (``key``) of one run's paper matrix, or of its ``column`` ("knowledge")."""
    part = mj if column is None else mj.get(column)
    if not isinstance(part, dict) or part.get("matrix") is None:
        return None
    return run_metrics({"tasks": mj["tasks"], **part}).get(key)


def values(runs: list[dict], key: str, column: str | None = None) -> list[float | None]:
    return [metric(r, key, column) for r in runs]


def ms(vals: Sequence[float | None]) -> str:
    s = seed_summary(vals)
    if s.mean is None:
        return "–"
    return f"{fmt(s.mean)} ± {fmt(s.std)}" if s.n > 1 else fmt(s.mean)


@dataclass(frozen=True)
class Row:
    finding: str
    paper: str
    ours: str
    test: str
    verdict: str
    sources: str
    spread: str = ""  # what ± covers: "training" seeds only, "training and data" seeds, "mixed", "" (unknown)


@dataclass(frozen=True)
class Measured:
    ours: str  # our numbers, mean ± std over seeds
    test: stats.Test | None  # None: a group it needs has no runs (an undefined Test: too few or equal values)
    sign: float  # the paper's direction for ``test.difference``: +1, −1, NaN (some difference), 0 (none)
    how: str  # the test as the table shows it
    sources: str  # the run folders it read (a glob)
    verdict: str | None = None  # set where the shape of the data decides (no interior peak)


@dataclass(frozen=True)
class Finding:
    key: str
    claim: str
    paper: str
    measure: Callable[["Runs"], Measured]
    varies: tuple[str, ...] = ()  # the config keys (or sections) its configurations differ in: what it studies


def verdict(test: stats.Test | None, sign: float, n: int, alpha: float = ALPHA) -> str:
    if test is None:
        return "not run"
    if test.undefined:
        return f"no test: {test.undefined}"
    if test.p < alpha and not math.isnan(test.difference):
        return "reproduced" if test.difference * sign > 0 else f"not reproduced: the opposite holds at p < {alpha}"
    return f"inconclusive at {n} seeds"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _t(test: stats.Test) -> str:
    if test.undefined:
        return f"no test ({test.undefined})"
    if isinstance(test.df, tuple):
        return f"F({test.df[0]}, {test.df[1]}) = {test.statistic:.2f}, {_p(test.p)}"
    df = test.df
    df = "∞" if math.isnan(df) else (f"{df:.0f}" if float(df).is_integer() else f"{df:.1f}")
    return f"t({df}) = {test.statistic:.2f}, {_p(test.p)}"


def _enough(*groups: list) -> bool:
    return all(len([v for v in g if v is not None]) >= 2 for g in groups)


def _ran(*groups: list) -> bool:
    """Whether every group has a value: a test is made (and may be undefined), else the finding is not run."""
    return all(any(v is not None for v in g) for g in groups)


# --- the findings -----------------------------------------------------------------------------------

def _forgets(runs: Runs):
    lora = runs("methods", "lora")
    bwt = values(lora, "bwt")
    test = stats.one_sample(bwt, 0.0) if _ran(bwt) else None
    ours = f"BWT {ms(bwt)} (MAA {ms(values(lora, 'maa'))})"
    how = f"one-sample t of BWT against 0: {_t(test)}" if test else "–"
    return Measured(ours, test, -1.0, how, runs.folders("methods", "lora"))


def _knowledge(runs: Runs):
    """The share of the forgetting that is knowledge: knowledge BWT / truth BWT per seed, against one half
    ("most of it is format" means the share is below 0.5; the paper's is 10.88 / 32.62 = 0.33)."""
    lora = [r for r in runs("methods", "lora") if isinstance(r.get("knowledge"), dict)]
    truth, know = values(lora, "bwt"), values(lora, "bwt", "knowledge")
    share = [None if a is None or b is None or a >= 0 else b / a for a, b in zip(truth, know)]
    test = stats.one_sample(share, 0.5) if _ran(share) else None
    ours = f"knowledge BWT {ms(know)} vs truth BWT {ms(truth)}; knowledge share of the forgetting {ms(share)}"
    how = f"one-sample t of the share against 0.5: {_t(test)}" if test else "–"
    return Measured(ours, test, -1.0, how, runs.folders("methods", "lora"))


def content_share(mj: dict) -> float | None:
    """Of the wrong answers on the earlier tasks after the last stage, the share that are a wrong answer
    of the right kind (``content``), not right content in another format or another task's answer
    (``format``, ``confusion``, ``other``): the tags of ``coin.tasks.knowledge``."""
    tags = mj.get("knowledge_tags")
    if not isinstance(tags, dict):
        return None
    wrong = content = 0
    for task in mj["tasks"][:-1]:
        t = tags.get(task) or {}
        wrong += sum(v for k, v in t.items() if k != "correct")
        content += t.get("content", 0)
    return None if not wrong else 100.0 * content / wrong


def _error_kinds(runs: Runs):
    lora = runs("methods", "lora")
    share = [content_share(r) for r in lora]
    test = stats.one_sample(share, 50.0) if _ran(share) else None
    ours = f"{ms(share)}% of the wrong answers on earlier tasks are wrong content of the right kind; the rest format or task confusion"
    how = f"one-sample t of the share against 50%: {_t(test)}" if test else "–"
    return Measured(ours, test, -1.0, how, runs.folders("methods", "lora"))


def _experts(runs: Runs):
    groups = {n: runs("experts", f"e{n}") for n in (1, 2, 4, 8)}
    maa = {n: values(g, "maa") for n, g in groups.items()}
    ours = " → ".join(ms(v) for v in maa.values()) + f" (BWT {ms(values(groups[1], 'bwt'))} → {ms(values(groups[8], 'bwt'))})"
    test = stats.welch(maa[8], maa[1]) if _ran(maa[1], maa[8]) else None
    how = f"Welch t, MAA 8 vs 1 expert: {_t(test)}" if test else "–"
    return Measured(ours, test, 1.0, how, runs.folders("experts", "e{1,2,4,8}"))


def _family(other: str, sign: float):
    def measure(runs: Runs):
        base, new = values(runs("family", "original"), "maa"), values(runs("family", other), "maa")
        test = stats.welch(new, base) if _ran(base, new) else None
        ours = f"MAA {ms(new)} vs original {ms(base)}"
        how = f"Welch t, MAA {other} vs original: {_t(test)}" if test else "–"
        return Measured(ours, test, sign, how, runs.folders("family", f"{{original,{other}}}"))
    return measure


VOLUMES = ("0.1", "0.2", "0.4", "0.6", "0.8", "1.0")


def _volume(runs: Runs):
    maa = {v: values(runs("volume", f"v{v}"), "maa") for v in VOLUMES}
    have = {v: x for v, x in maa.items() if _enough(x)}
    ours = "MAA " + ", ".join(f"{v}: {ms(x)}" for v, x in maa.items())
    if len(have) < 3 or "0.1" not in have or "1.0" not in have:
        return Measured(ours, None, 1.0, "–", runs.folders("volume", "v*"))
    peak = max(have, key=lambda v: seed_summary(have[v]).mean)
    if peak in ("0.1", "1.0"):  # no interior peak: test the monotone trend end to end
        test = stats.welch(have["1.0"], have["0.1"])
        how = f"no interior peak (max at {peak}); Welch t, MAA 1.0 vs 0.1: {_t(test)}"
        return Measured(ours, test, math.nan, how, runs.folders("volume", "v*"),
                        verdict=f"not reproduced: MAA peaks at {peak}, an end of the range")
    up, down = stats.welch(have[peak], have["0.1"]), stats.welch(have[peak], have["1.0"])
    # both must hold: report the weaker side (an undefined side, where there is one)
    test = up if up.undefined or (not down.undefined and up.p >= down.p) else down
    how = (f"peak at {peak} (chosen from these runs, so optimistic); Welch t, peak vs 0.1: {_t(up)}; "
           f"peak vs 1.0: {_t(down)}")
    return Measured(ours, test, 1.0, how, runs.folders("volume", "v*"))


def _volume_bwt(runs: Runs):
    lo, hi = values(runs("volume", "v0.1"), "bwt"), values(runs("volume", "v1.0"), "bwt")
    test = stats.welch(hi, lo) if _ran(lo, hi) else None
    ours = f"BWT {ms(lo)} at 0.1 vs {ms(hi)} at 1.0"
    how = f"Welch t, BWT 1.0 vs 0.1: {_t(test)}" if test else "–"
    return Measured(ours, test, -1.0, how, runs.folders("volume", "v{0.1,1.0}"))


def _order(key: str, sign: float):
    def measure(runs: Runs):
        paper, alpha = values(runs("order", "paper"), key), values(runs("order", "alphabet"), key)
        test = stats.welch(alpha, paper) if _ran(paper, alpha) else None
        ours = f"{key.upper()} alphabet {ms(alpha)} vs paper order {ms(paper)}"
        how = f"Welch t, {key.upper()} alphabet vs paper: {_t(test)}" if test else "–"
        return Measured(ours, test, sign, how, runs.folders("order", "{paper,alphabet}"))
    return measure


def _order_spread(runs: Runs):
    groups = [values(runs("order", n), "maa") for n in ("paper", "alphabet", "shuffle-1", "shuffle-2")]
    ran = [g for g in groups if _ran(g)]
    ready = [g for g in ran if _enough(g)]
    test = stats.anova(ready if len(ready) >= 2 else ran) if len(ran) >= 2 else None
    ours = "MAA " + ", ".join(f"{n}: {ms(g)}" for n, g in zip(("paper", "alphabet", "shuffle:1", "shuffle:2"), groups))
    how = f"one-way ANOVA over {len(ready)} orders: {_t(test)}" if test else "–"
    return Measured(ours, test, math.nan, how, runs.folders("order", "*"))


def _rank(key: str):
    def measure(runs: Runs):
        groups = {r: values(runs("rank", f"r{r}"), key) for r in (8, 16, 32, 64)}
        test = stats.welch(groups[64], groups[8]) if _ran(groups[8], groups[64]) else None
        ours = f"{key.upper()} " + " → ".join(f"{r}: {ms(g)}" for r, g in groups.items())
        how = f"Welch t, {key.upper()} rank 64 vs 8: {_t(test)}" if test else "–"
        return Measured(ours, test, 1.0, how, runs.folders("rank", "r{8,16,32,64}"))
    return measure


def _size(key: str):
    def measure(runs: Runs):
        small, big = values(runs("size", "tiny"), key), values(runs("size", "tiny-4x"), key)
        test = stats.welch(big, small) if _ran(small, big) else None
        ours = f"{key.upper()} 4x {ms(big)} vs tiny {ms(small)}"
        how = f"Welch t, {key.upper()} 4x vs tiny: {_t(test)}" if test else "–"
        return Measured(ours, test, 1.0, how, runs.folders("size", "{tiny,tiny-4x}"))
    return measure


EXPERTS, FAMILY, VOLUME, ORDER, RANK, SIZE = (("adapter.experts",), ("data.instructions",), ("data.volume",),
                                              ("tasks.order",), ("adapter.r", "adapter.alpha"), ("model",))

FINDINGS: tuple[Finding, ...] = (
    Finding("a", "Sequential LoRA forgets heavily", "BWT −32.62, MAA 32.97 (v2 table 2)", _forgets),
    Finding("b", "Forgetting is mostly lost format (instruction following), not lost knowledge",
            "judge BWT −10.88 vs truth BWT −32.62, a share of 0.33 (v2 tables 2, 3; v1: −11.75 with a LLaVA judge)",
            _knowledge),
    Finding("b2", "… as the kinds of the wrong answers say",
            "not measured by the paper: its judge scores each answer, it does not tag errors", _error_kinds),
    Finding("c", "More MoELoRA experts forget less",
            "MAA 32.97 → 35.75 → 40.24 → 42.76 for 1, 2, 4, 8 experts; BWT −32.62 → −25.91 (v1 table 5, v2 table 8)",
            _experts, EXPERTS),
    Finding("d1", "10Type instructions help", "\"significantly enhances\" (v2 table 6; its numbers are not in our copy)",
            _family("10type", 1.0), FAMILY),
    Finding("d2", "Diverse instructions barely matter",
            "MAA 32.92 vs 32.97, BWT −33.67 vs −32.62 (v1 table 2); \"minimal impact\" (v2 table 6)",
            _family("diverse", 0.0), FAMILY),
    Finding("e1", "More data per task first helps, then hurts",
            "MAA 30.27, 30.33, 33.18, 31.47, 30.00, 32.97 for 0.1 … 1.0; peak at 0.4 (v1 table 4, v2 table 7)", _volume,
            VOLUME),
    Finding("e2", "More data per task forgets more", "BWT −16.17 at 0.1 vs −32.62 at 1.0 (v1 table 4)", _volume_bwt,
            VOLUME),
    Finding("f1", "Alphabet order forgets less …", "BWT −25.90 vs −32.62 (v2 table 5)", _order("bwt", 1.0), ORDER),
    Finding("f2", "… but ends lower overall", "MAA 31.08 vs 32.97 (v2 table 5)", _order("maa", -1.0), ORDER),
    Finding("f3", "The order matters", "two orders only (v2 table 5)", _order_spread, ORDER),
    Finding("g1", "A higher LoRA rank does better",
            "MAA 33.18 → 38.31 → 38.30 for r 128, 192, 256 at 40% data (v2 table 12)", _rank("maa"), RANK),
    Finding("g2", "A higher LoRA rank forgets less", "BWT −24.85 → −21.15 → −19.8 (v2 table 12)", _rank("bwt"), RANK),
    Finding("h1", "A larger model forgets less", "BWT −28.79 (13B) vs −32.62 (7B) (v2 table 10)", _size("bwt"), SIZE),
    Finding("h2", "A larger model does better", "MAA 39.43 (13B) vs 32.97 (7B) (v2 table 10)", _size("maa"), SIZE),
)


def findings(methods: str | os.PathLike, studies: str | os.PathLike, alpha: float = ALPHA) -> list[Row]:
    """One ``Row`` per finding from the run folders under ``methods`` and ``studies``.

    Raises ``IncomparableRuns`` naming, per finding, every key in which its runs differ beyond their seeds
    and its studied variable (``Finding.varies``)."""
    runs = Runs(methods, studies)
    rows, unlike = [], {}  # unlike: each line where runs differ -> the findings that read them
    for f in FINDINGS:
        runs.reset()
        m = f.measure(runs)
        for line in runs.problems(f.varies):
            unlike.setdefault(line, []).append(f.key)
        n = min((k for k in runs.used if k), default=0)
        if missing := runs.missing():  # a half-run study: what it lacks, not a verdict on part of it
            word = "partial: " + "; ".join(missing)
        elif m.test is not None and m.test.undefined:  # equal numbers over seeds, or one seed: no evidence either way
            word = f"no test: {m.test.undefined}"
        elif m.verdict is not None:
            word = m.verdict
        elif m.test is not None and m.sign == 0:  # the paper claims no (or a negligible) difference
            word = ("not reproduced: they differ" if m.test.p < alpha
                    else f"consistent: no difference at p < {alpha} ({n} seeds)")
        elif m.test is not None and math.isnan(m.sign):  # no direction claimed: is there any difference?
            word = "reproduced" if m.test.p < alpha else f"inconclusive at {n} seeds"
        else:
            word = verdict(m.test, m.sign, n, alpha)
        rows.append(Row(f"({f.key}) {f.claim}", f.paper, m.ours, m.how, word, m.sources, runs.spread()))
    if unlike:
        raise IncomparableRuns(
            "coin findings compares runs made the same way: the seeds of a configuration may differ only in their "
            "seeds, and the configurations of a finding only in the variable it studies (another data size, "
            "recipe or task set is another experiment). These differ in more:\n  - "
            + "\n  - ".join(f"({', '.join(keys)}) {line}" for line, keys in unlike.items()))
    return rows


def _spread_note(rows: list[Row]) -> str:
    """What the table's ± and tests cover, from the runs' configs."""
    kinds = {r.spread for r in rows if r.spread}
    if not kinds:
        return ""
    if kinds == {"training and data"}:
        return ("\n± and the tests are over training and data seeds: each run drew its own CoIN-Synth data "
                "(data.synth.seed).\n")
    only = ("over training seeds only: the runs of a configuration used the same data (CoIN-Synth's data.synth.seed), "
            "so they leave out the sampling error of the test set; `coin sweep --data-seeds` draws the data anew "
            "for each seed.")
    if kinds == {"training"}:
        return "\n± and the tests are " + only + "\n"
    both = ", ".join(r.finding.split(")")[0] + ")" for r in rows if r.spread in ("training and data", "mixed"))
    return f"\n± and the tests are over training and data seeds for {both}; for the others " + only + "\n"


def findings_markdown(rows: list[Row]) -> str:
    head = "| finding | paper (LLaVA-1.5-7B) | ours (mean ± std over seeds) | test | verdict |\n|---|---|---|---|---|\n"
    body = "".join(f"| {r.finding} | {r.paper} | {r.ours} | {r.test} | **{r.verdict}** |\n" for r in rows)
    sources = "".join(f"- ({r.finding.split(')')[0][1:]}) `{r.sources}`\n" for r in rows)
    return head + body + _spread_note(rows) + "\nRun folders (each `matrix.json`):\n\n" + sources
