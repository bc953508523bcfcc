"""``coin findings``: one row per CoIN finding from the sweeps' run folders, with a test and a verdict."""

from __future__ import annotations

import json

from coin.cli import main
from coin.findings import FINDINGS, findings, findings_markdown, metric


def _write(folder, diag: float, last_first: float, knowledge_last_first: float | None = None):
    """A two-task run: A = [[diag, –], [last_first, diag]], so MAA = (diag + (last_first + diag)/2) / 2."""
    folder.mkdir(parents=True)
    mj = {"tasks": ["A", "B"], "matrix": [[diag, None], [last_first, diag]], "zero_shot": None}
    if knowledge_last_first is not None:
        mj["knowledge"] = {"matrix": [[diag, None], [knowledge_last_first, diag]]}
    (folder / "matrix.json").write_text(json.dumps(mj))


def _group(root, name, diag, last_first, knowledge=None):
    for seed, jitter in enumerate((-1.0, 0.0, 1.5)):
        _write(root / f"{name}-s{seed}", diag + jitter, last_first + jitter,
               None if knowledge is None else knowledge + jitter)


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
    assert rows["a"].verdict == "reproduced" and "one-sample t" in rows["a"].test
    assert rows["b"].verdict == "reproduced" and "share of the forgetting 0.17 ± 0.00" in rows["b"].ours
    assert rows["b2"].verdict == "not run"  # these runs carry no knowledge_tags
    assert rows["c"].verdict == "reproduced" and rows["c"].ours.startswith("42.67 ± 1.26")  # e1: MAA 41.5, 42.5, 44
    assert rows["d1"].verdict == "not reproduced: the opposite holds at p < 0.05"
    assert rows["d2"].verdict == "consistent: no difference at p < 0.05 (3 seeds)"
    assert rows["e1"].verdict == "not reproduced: MAA peaks at 1.0, an end of the range"
    assert rows["e2"].verdict.startswith("inconclusive")  # BWT is −15 at every volume
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
