"""``coin findings``: one row per CoIN finding from the sweeps' run folders, with a test and a verdict."""

from __future__ import annotations

import json

import pytest
import yaml

from coin.cli import main
from coin.errors import IncomparableRuns
from coin.findings import FINDINGS, findings, findings_markdown, metric


def _write(folder, diag: float, last_first: float, knowledge_last_first: float | None = None,
           config: dict | None = None, tasks: tuple = ("A", "B")):
    """A two-task run: A = [[diag, –], [last_first, diag]], so MAA = (diag + (last_first + diag)/2) / 2,
    BWT = last_first − diag; with ``config``, its config.yaml."""
    folder.mkdir(parents=True)
    mj = {"tasks": list(tasks), "matrix": [[diag, None], [last_first, diag]], "zero_shot": None}
    if knowledge_last_first is not None:
        mj["knowledge"] = {"matrix": [[diag, None], [knowledge_last_first, diag]]}
    (folder / "matrix.json").write_text(json.dumps(mj))
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))


# per seed: the jitter of the diagonal and of the first task after the second stage (BWT moves by their difference)
JITTER = ((-1.0, -2.0), (0.0, 0.5), (1.5, 1.0))


def _group(root, name, diag, last_first, knowledge=None):
    for seed, (jd, jl) in enumerate(JITTER):
        _write(root / f"{name}-s{seed}", diag + jd, last_first + jl, None if knowledge is None else knowledge + jl)


def test_findings_give_the_verdict_the_runs_support(tmp_path):
    methods, studies = tmp_path / "methods", tmp_path / "studies"
    _group(methods, "lora", 80, 20, knowledge=70)  # forgets 60 points of format, 10 of knowledge: share 1/6
    for n, d in ((1, 50), (2, 52), (4, 56), (8, 60)):
        _group(studies / "experts", f"e{n}", d, d - 30)
    _group(studies / "family", "original", 60, 30)
    _group(studies / "family", "diverse", 60.4, 30.2)  # within noise of original
    _group(studies / "family", "10type", 40, 10)  # clearly worse: the opposite of the paper
    for v, d in (("0.1", 40), ("0.2", 45), ("0.4", 50), ("0.6", 55), ("0.8", 60), ("1.0", 65)):
        _group(studies / "volume", f"v{v}", d, d - 30)  # rises to the end: no interior peak
    rows = {r.finding.split(")")[0][1:]: r for r in findings(methods, studies)}
    assert set(rows) == {f.key for f in FINDINGS}
    assert rows["a"].verdict == "reproduced" and "one-sample t" in rows["a"].test  # BWT −61, −59.5, −60.5
    # knowledge share of the forgetting: 11/61, 9.5/59.5, 10.5/60.5
    assert rows["b"].verdict == "reproduced" and "share of the forgetting 0.17 ± 0.01" in rows["b"].ours
    assert rows["b2"].verdict == "not run"  # these runs carry no knowledge_tags
    # MAA = d − 7.5 + (3 jd + jl) / 4: e1 41.25, 42.625, 43.875
    assert rows["c"].verdict == "reproduced" and rows["c"].ours.startswith("42.58 ± 1.31")
    assert rows["d1"].verdict == "not reproduced: the opposite holds at p < 0.05"
    assert rows["d2"].verdict == "consistent: no difference at p < 0.05 (3 seeds)"
    assert rows["e1"].verdict == "not reproduced: MAA peaks at 1.0, an end of the range"
    assert rows["e2"].verdict.startswith("inconclusive")  # BWT is −31, −29.5, −30.5 at every volume
    for key in ("f1", "f2", "f3", "g1", "g2", "h1", "h2"):
        assert rows[key].verdict == "not run" and rows[key].test == "–"
    text = findings_markdown(list(rows.values()))
    assert "| (a) Sequential LoRA forgets heavily |" in text and "runs/" not in text.split("Run folders")[0]


def test_content_share_counts_the_earlier_tasks_wrong_answers():
    from coin.findings import content_share

    tags = {"A": {"correct": 10, "content": 30, "confusion": 50, "format": 10, "other": 0},
            "B": {"correct": 20, "content": 0, "confusion": 80, "format": 0, "other": 0},
            "C": {"correct": 0, "content": 100}}  # the last task: not an earlier one, not counted
    assert content_share({"tasks": ["A", "B", "C"], "knowledge_tags": tags}) == 100.0 * 30 / (90 + 80)
    assert content_share({"tasks": ["A", "B"]}) is None


def test_metric_reads_the_paper_and_the_knowledge_matrix(tmp_path):
    _write(tmp_path / "r-s0", 80, 20, 70)
    mj = json.loads((tmp_path / "r-s0" / "matrix.json").read_text())
    assert metric(mj, "maa") == (80 + (20 + 80) / 2) / 2
    assert metric(mj, "maa", "knowledge") == (80 + (70 + 80) / 2) / 2
    assert metric({"tasks": ["A"], "matrix": [[1.0]]}, "maa", "knowledge") is None


def test_an_interior_peak_is_reproduced_and_the_cli_writes_the_table(tmp_path, capsys):
    studies = tmp_path / "studies"
    for v, d in (("0.1", 40), ("0.2", 50), ("0.4", 70), ("0.6", 55), ("0.8", 50), ("1.0", 45)):
        _group(studies / "volume", f"v{v}", d, d - 30)
    out = tmp_path / "findings.md"
    assert main(["findings", "--methods", str(tmp_path / "none"), "--studies", str(studies), "--out", str(out)]) == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| (e1)"))
    assert "peak at 0.4 (chosen from these runs, so optimistic)" in row and row.endswith("**reproduced** |")
    assert "| (a) Sequential LoRA forgets heavily |" in text and "**not run**" in text


# ----------------------------------------------------------------------------- zero variance (#32)

def test_equal_numbers_over_seeds_are_no_test_and_never_reproduced(tmp_path):
    """Two seeds of a two-task run gave the same matrix: BWT has zero variance, and the one-sample t is
    undefined. It printed "t(1) = -inf, p < 0.001, reproduced"."""
    methods, studies = tmp_path / "methods", tmp_path / "studies"
    for seed in (0, 1):
        _write(methods / f"lora-s{seed}", 80.0 + seed, 20.0 + seed)  # BWT −60 at both seeds
        _write(studies / "family" / f"original-s{seed}", 60.0, 30.0)  # constant, equal means:
        _write(studies / "family" / f"diverse-s{seed}", 60.0, 30.0)  # not "consistent" either
    rows = {r.finding.split(")")[0][1:]: r for r in findings(methods, studies)}
    assert rows["a"].verdict == "no test: zero variance"
    assert "inf" not in rows["a"].test and "no test (zero variance)" in rows["a"].test
    assert rows["d2"].verdict == "no test: zero variance"


def test_the_verdict_of_an_undefined_test_is_no_test():
    from coin.findings import verdict
    from coin.stats import welch

    assert verdict(welch([1.0, 1.0], [2.0, 2.0]), -1.0, 2) == "no test: zero variance"
    assert verdict(welch([1.0], [2.0, 3.0]), -1.0, 1) == "no test: fewer than two values"
    assert verdict(None, -1.0, 0) == "not run"


def test_one_seed_is_no_test(tmp_path):
    _write(tmp_path / "methods" / "lora-s0", 80.0, 20.0)
    rows = {r.finding.split(")")[0][1:]: r for r in findings(tmp_path / "methods", tmp_path / "studies")}
    assert rows["a"].verdict == "no test: fewer than two values"
    assert rows["c"].verdict == "not run"  # no runs at all


# ----------------------------------------------------------------------------- like with like (#32)

def _cfg(name: str, seed: int, **sections) -> dict:
    cfg = {"name": name, "seed": seed, "method": "sequential", "data": {"volume": 1.0, "synth": {"seed": 0}},
           "adapter": {"r": 32, "alpha": 64}, "train": {"lr": 0.002}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def test_seeds_of_different_recipes_are_not_pooled(tmp_path, capsys):
    """lora-s0 from a 20%-data sweep and lora-s1 from a full one are two experiments, not two seeds."""
    methods = tmp_path / "methods"
    _write(methods / "lora-s0", 80.0, 20.0, config=_cfg("lora", 0, data={"volume": 0.2}))
    _write(methods / "lora-s1", 81.0, 22.0, config=_cfg("lora", 1))
    _write(methods / "lora-s2", 79.0, 19.5, config=_cfg("lora", 2, data={"volume": 1.0, "synth": {"seed": 2}}))
    with pytest.raises(IncomparableRuns) as e:
        findings(methods, tmp_path / "studies")
    text = str(e.value)
    assert "data.volume: 0.2 (methods/lora-s0) vs 1.0 (methods/lora-s1, methods/lora-s2)" in text
    assert "(a, b, b2) data.volume" in text  # one line for the findings that read these runs
    assert "seed" not in text.replace("seeds", "")  # the seeds, and the data seed, may differ
    assert main(["findings", "--methods", str(methods), "--studies", str(tmp_path / "studies")]) == 2
    assert "data.volume" in capsys.readouterr().err


def test_a_study_varies_its_own_variable_and_nothing_else(tmp_path):
    studies = tmp_path / "studies"
    for seed, (jd, jl) in enumerate(JITTER):
        for v, d in (("0.1", 40.0), ("1.0", 60.0)):
            _write(studies / "volume" / f"v{v}-s{seed}", d + jd, d - 30 + jl,
                   config=_cfg(f"volume-{v}", seed, data={"volume": float(v)}))
    rows = {r.finding.split(")")[0][1:]: r for r in findings(tmp_path / "methods", studies)}
    assert rows["e2"].verdict.startswith("inconclusive")  # compared: the volume is the study's variable
    for seed in range(3):  # the volume 1.0 runs at another learning rate: two variables at once
        cfg = _cfg("volume-1.0", seed, data={"volume": 1.0}, train={"lr": 0.001})
        (studies / "volume" / f"v1.0-s{seed}" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(IncomparableRuns) as e:
        findings(tmp_path / "methods", studies)
    text = str(e.value)
    assert "(e1, e2) train.lr: 0.002 (volume/v0.1-s0, volume/v0.1-s1, volume/v0.1-s2) vs 0.001 (volume/v1.0-s0, " \
           "volume/v1.0-s1, volume/v1.0-s2)" in text
    assert "data.volume" not in text
    cfg = _cfg("volume-1.0", 1, data={"volume": 0.8}, train={"lr": 0.001})  # a seed of another volume
    (studies / "volume" / "v1.0-s1" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(IncomparableRuns, match=r"\(e1, e2\) data\.volume: 0\.8 \(volume/v1\.0-s1\) vs 1\.0 "
                                               r"\(volume/v1\.0-s0, volume/v1\.0-s2\)"):
        findings(tmp_path / "methods", studies)  # the studied variable, but within one configuration's seeds


def test_the_order_study_varies_the_order_not_the_tasks(tmp_path):
    studies = tmp_path / "studies"
    for seed, (jd, jl) in enumerate(JITTER):
        _write(studies / "order" / f"paper-s{seed}", 60 + jd, 30 + jl, config=_cfg("order-paper", seed),
               tasks=("A", "B"))
        _write(studies / "order" / f"alphabet-s{seed}", 61 + jd, 33 + jl, config=_cfg("order-alphabet", seed),
               tasks=("B", "A"))
    rows = {r.finding.split(")")[0][1:]: r for r in findings(tmp_path / "methods", studies)}
    assert rows["f1"].verdict == "reproduced"  # BWT −27.x vs −30.x, the paper's direction
    _write(studies / "order" / "shuffle-1-s0", 60, 30, config=_cfg("order-shuffle-1", 0), tasks=("A", "C"))
    _write(studies / "order" / "shuffle-1-s1", 60, 30, config=_cfg("order-shuffle-1", 1), tasks=("A", "C"))
    with pytest.raises(IncomparableRuns, match=r"the task set: \['A', 'C'\] \(order/shuffle-1-s0, "
                                               r"order/shuffle-1-s1\) vs \['A', 'B'\] \(order/alphabet-s0"):
        findings(tmp_path / "methods", studies)


def test_the_table_says_what_the_spread_covers(tmp_path):
    methods = tmp_path / "methods"
    for seed, (jd, jl) in enumerate(JITTER):
        _write(methods / f"lora-s{seed}", 80 + jd, 20 + jl, config=_cfg("lora", seed))
    text = findings_markdown(findings(methods, tmp_path / "studies"))
    assert "over training seeds only" in text and "coin sweep --data-seeds" in text
    for seed in range(3):
        (methods / f"lora-s{seed}" / "config.yaml").write_text(yaml.safe_dump(
            _cfg("lora", seed, data={"volume": 1.0, "synth": {"seed": seed}})))
    text = findings_markdown(findings(methods, tmp_path / "studies"))
    assert "over training and data seeds" in text and "training seeds only" not in text


# ----------------------------------------------------------------------------- a study half-run (#32)

def test_a_half_run_study_is_partial_not_a_verdict(tmp_path):
    """While the order study's shuffles were still running, (f3) read "one-way ANOVA over 2 orders ...
    reproduced/inconclusive": a verdict on the half of a study that had finished. The verdict now names what
    is missing, and the test column still shows what the runs so far give."""
    studies = tmp_path / "studies"
    _group(studies / "order", "paper", 60, 30)
    _group(studies / "order", "alphabet", 70, 50)  # far apart: the ANOVA over these two alone is p < 0.05
    rows = {r.finding.split(")")[0][1:]: r for r in findings(tmp_path / "methods", studies)}
    assert rows["f1"].verdict == "reproduced"  # reads paper and alphabet only: complete
    assert rows["f3"].verdict == "partial: shuffle-1 has no runs; shuffle-2 has no runs"
    assert rows["f3"].test.startswith("one-way ANOVA over 2 orders: F(1, 4)")
    for r, d in ((8, 40), (16, 50), (32, 60), (64, 70)):
        _group(studies / "rank", f"r{r}", d, d - 30)
    for name in ("r64-s2", "r16-s1"):  # a cut-off sweep: two configurations lack a seed
        (studies / "rank" / name / "matrix.json").unlink()
    rows = {r.finding.split(")")[0][1:]: r for r in findings(tmp_path / "methods", studies)}
    assert rows["g1"].verdict == "partial: r16 has 2 of 3 seeds; r64 has 2 of 3 seeds"
    assert rows["g1"].test.startswith("Welch t, MAA rank 64 vs 8")
    assert rows["h1"].verdict == "not run"  # nothing of the size study: not partial
    assert "**partial: r16 has 2 of 3 seeds; r64 has 2 of 3 seeds**" in findings_markdown(list(rows.values()))
