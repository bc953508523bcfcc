"""The study section of a comparison (coin.report.study): one variable, seeds averaged, knowledge beside truth."""

import json
from pathlib import Path

import yaml

from coin.report import write_comparison
from coin.report.study import varying_keys


def _fake_run(root: Path, name: str, seed: int, rank: int, maa_shift: float) -> Path:
    d = root / f"{name}-s{seed}"
    d.mkdir(parents=True)
    a = 40.0 + maa_shift + seed
    matrix = [[a, None], [a - 20.0, a + 5.0]]
    knowledge = {"matrix": [[a + 10, None], [a + 5.0, a + 12.0]], "zero_shot": None}
    (d / "matrix.json").write_text(json.dumps({"tasks": ["GQA", "VQAv2"], "matrix": matrix, "zero_shot": None,
                                               "knowledge": knowledge, "seed": seed, "run_name": f"{name}-s{seed}"}))
    (d / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": seed, "adapter": {"r": rank, "alpha": 2 * rank}}))
    return d


def test_varying_keys():
    assert varying_keys([{"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}]) == ["a.c"]
    assert varying_keys([{"x": 1}, {"x": 1}]) == []


def test_a_rank_study_gets_its_table_and_plot(tmp_path):
    runs = [_fake_run(tmp_path, f"rank-{r}", s, r, shift) for r, shift in ((8, 0.0), (32, 6.0), (16, 3.0))
            for s in (0, 1, 2)]
    md = write_comparison(runs, tmp_path / "report").read_text()
    assert "## Study: adapter.alpha + adapter.r" in md
    table = md[md.index("## Study"):]
    rows = [line for line in table.splitlines() if line.startswith("| 16, 8") or line.startswith("| 32, 16")
            or line.startswith("| 64, 32")]
    assert [r.split("|")[1].strip() for r in rows] == ["16, 8", "32, 16", "64, 32"]  # sorted by the variable
    # rank 8: A = 40 + seed, MAA = mean of the rows' means = (A + ((A - 20) + (A + 5)) / 2) / 2 = A - 3.75
    assert "37.25 ± 1.00 (n=3)" in rows[0]
    assert "knowledge MAA" in table
    assert (tmp_path / "report" / "study.png").stat().st_size > 1000


def test_no_study_section_for_a_comparison_of_unrelated_configs(tmp_path):
    a = _fake_run(tmp_path, "a", 0, 8, 0.0)
    b = _fake_run(tmp_path, "b", 0, 8, 1.0)
    cfg = yaml.safe_load((b / "config.yaml").read_text())
    cfg.update(method="ewc", method_options={"lambda_": 1.0}, data={"volume": 0.5})
    (b / "config.yaml").write_text(yaml.safe_dump(cfg))
    md = write_comparison([a, b], tmp_path / "report", allow=["data.volume"]).read_text()  # else refused
    assert "## Study" not in md


def test_two_methods_with_their_own_option_are_not_a_study(tmp_path):
    # method and method_options.lambda_ vary together: two sections, so no "Study: method + ..." table
    a = _fake_run(tmp_path, "disco", 0, 8, 0.0)
    b = _fake_run(tmp_path, "ewc", 0, 8, 1.0)
    for d, extra in ((a, {"method": "disco"}), (b, {"method": "ewc", "method_options": {"lambda_": 0.1}})):
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        cfg.update(extra)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    md = write_comparison([a, b], tmp_path / "report").read_text()
    assert "## Study" not in md
