"""``coin table``: a sweep's method table from its run folders (#32: the table is regenerated, no cell by hand)."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml
from scipy import stats as sp

from coin.cli import main
from coin.errors import IncomparableRuns
from coin.report.method_table import method_table

TASKS = ["A", "B", "C"]


def _cfg(seed: int, method: str = "sequential", **sections) -> dict:
    cfg = {"name": "x", "seed": seed, "method": method, "data": {"volume": 1.0, "synth": {"seed": 0}},
           "adapter": {"type": "lora", "r": 32, "alpha": 64}, "train": {"lr": 0.002}}
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def _run(folder, seed: int, diag: float, last: float, config: dict, routing: dict | None = None,
         commit: str = "abcdef1234", threads: int = 1):
    """A three-task run whose diagonal is ``diag`` and whose earlier tasks sit at ``last`` after the last stage."""
    folder.mkdir(parents=True)
    m = [[diag, None, None], [last, diag, None], [last, last, diag]]
    mj = {"tasks": TASKS, "matrix": m, "zero_shot": None, "seed": seed,
          "strict": {"matrix": m, "metrics": {"maa": diag - 1, "bwt": last - diag, "acc": last}},
          "knowledge": {"matrix": m, "metrics": {"maa": diag + 1, "bwt": last - diag + 1}},
          "cost": {"trainable_params": 1000, "train_seconds": 10.0 + seed}}
    (folder / "matrix.json").write_text(json.dumps(mj))
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "env.json").write_text(json.dumps({"coin_commit": commit, "threads": threads, "processes": 1,
                                                 "cpu": {"name": "AMD EPYC", "family": "25", "model": "17"}}))
    (folder / "env-history.jsonl").write_text(json.dumps({"time": f"2026-12-0{seed + 1}T10:00:00"}) + "\n")
    if routing is not None:
        stage = folder / "stages" / f"03-{TASKS[-1]}"
        stage.mkdir(parents=True)
        (stage / "routing.json").write_text(json.dumps({t: {"accuracy": a, "n": 10} for t, a in routing.items()}))


def _sweep(root):
    """lora: low ACC with spread; lwf-free (a non-default option): high ACC; disco: routes; multitask: no MAA."""
    for s, (d, last) in enumerate(((80, 10), (82, 14), (78, 9))):
        _run(root / f"lora-s{s}", s, d, last, _cfg(s))
        _run(root / f"lwf-free-s{s}", s, d, last + 40, _cfg(s, "lwf", method_options={"inputs": "current",
                                                                                     "lambda_": 0.1}))
        _run(root / f"disco-s{s}", s, d, last + 20, _cfg(s, "disco"),
             routing={"A": 1.0, "B": 0.5 + 0.1 * s, "C": 0.9})
    return root


def _row(text: str, config: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{config}` |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_table_pools_seeds_tests_against_the_baseline_and_sorts_by_maa(tmp_path):
    text = method_table(_sweep(tmp_path / "sweep"))
    rows = [ln.split("|")[1].strip() for ln in text.splitlines() if ln.startswith("| `")]
    assert rows[:3] == ["`lwf-free`", "`disco`", "`lora`"]  # best MAA first (the first table)
    lora, free = _row(text, "lora"), _row(text, "lwf-free")
    acc = [10, 14, 9]  # ACC = mean of the last row = (2 * last + diag) / 3
    lora_acc = [(2 * a + d) / 3 for a, d in zip(acc, (80, 82, 78))]
    free_acc = [(2 * (a + 40) + d) / 3 for a, d in zip(acc, (80, 82, 78))]
    assert lora[5] == f"{statistics.mean(lora_acc):.2f} ± {statistics.stdev(lora_acc):.2f}"
    assert lora[-1] == "–"  # the baseline is not tested against itself
    p = sp.ttest_ind(free_acc, lora_acc, equal_var=False).pvalue
    diff = statistics.mean(free_acc) - statistics.mean(lora_acc)
    assert free[-1] == f"**+{diff:.1f} (p < 0.001)**" if p < 0.001 else f"**+{diff:.1f} (p = {p:.3f})**"
    assert free[1] == "`lwf` (inputs current)"  # the option set away from the default, not lambda_ 0.1
    assert lora[1] == "`sequential`"
    strict = (statistics.mean([79, 81, 77]), statistics.mean([a + 40 - d for a, d in zip(acc, (80, 82, 78))]),
              statistics.mean([a + 40 for a in acc]))
    assert free[6] == f"{strict[0]:.2f} / {strict[1]:+.2f} / {strict[2]:.2f}"  # the strict protocol's means


def test_routed_methods_show_their_routing_accuracy_per_task_and_the_others_none(tmp_path):
    text = method_table(_sweep(tmp_path / "sweep"))
    per_seed = [(1.0 + 0.5 + 0.1 * s + 0.9) / 3 * 100 for s in range(3)]
    assert _row(text, "disco")[8] == f"{statistics.mean(per_seed):.1f} ± {statistics.stdev(per_seed):.1f}"
    assert _row(text, "lora")[8] == "–"
    routing = text[text.index("Routing accuracy (%) per task"):]
    disco = _row(routing, "disco")
    assert disco[1:] == ["100.0 ± 0.0", "60.0 ± 10.0", "90.0 ± 0.0"]
    assert "`lora`" not in routing.split("Cost per configuration")[0]  # only routed methods in that table


def test_the_table_names_where_its_numbers_come_from(tmp_path):
    text = method_table(_sweep(tmp_path / "sweep"))
    assert "9 runs in 3 configurations, seeds 0, 1, 2; coin abcdef1" in text
    assert "1 torch thread(s) and 1 process(es) per run on AMD EPYC family 25 model 17" in text
    assert "started between 2026-12-01T10:00:00 and 2026-12-03T10:00:00" in text
    assert "training seeds only" in text


def test_equal_numbers_over_seeds_are_no_test(tmp_path):
    root = tmp_path / "sweep"
    for s in range(3):
        _run(root / f"lora-s{s}", s, 80, 10, _cfg(s))
        _run(root / f"zeroshot-s{s}", s, 20, 20, _cfg(s, "zeroshot"))
    text = method_table(root)
    # both groups constant: Welch's test is undefined, never "p < 0.001"
    assert _row(text, "zeroshot")[-1] == f"{20 - 100 / 3:+.1f} (no test: zero variance)"


def test_runs_of_another_recipe_are_refused_by_key_and_the_cli_writes_the_file(tmp_path, capsys):
    root = _sweep(tmp_path / "sweep")
    out = tmp_path / "table.md"
    assert main(["table", str(root), "--out", str(out)]) == 0
    assert out.read_text().startswith("9 runs in 3 configurations")
    _run(root / "lora-s3", 3, 80, 10, _cfg(3, data={"volume": 0.2, "synth": {"seed": 0}}))
    with pytest.raises(IncomparableRuns, match="data.volume"):
        method_table(root)
    assert main(["table", str(root)]) == 2
    assert "data.volume" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no finished run"):
        method_table(tmp_path / "empty")


def test_a_key_named_with_allow_diff_may_differ_and_is_listed(tmp_path):
    root = _sweep(tmp_path / "sweep")
    for s in range(3):  # as the LLaVA zeroshot configs: no separate zero-shot stage
        _run(root / f"zeroshot-s{s}", s, 20, 20, _cfg(s, "zeroshot", eval={"zero_shot": False}))
    with pytest.raises(IncomparableRuns, match="eval.zero_shot"):
        method_table(root)
    text = method_table(root, allow=["eval.zero_shot"])
    assert "These keys differ as well (allowed by --allow-diff): eval.zero_shot" in text
    assert _row(text, "zeroshot")[3] == "20.00 ± 0.00"


def test_a_study_sits_beside_the_baseline_runs_and_a_shared_name_says_its_folder(tmp_path):
    methods = _sweep(tmp_path / "methods")
    study = tmp_path / "ewc-lambda"
    for s in range(3):
        for lam, gain in ((1, 0), (100, 30)):
            _run(study / f"l{lam}-s{s}", s, 80, 10 + gain + s, _cfg(s, "ewc", method_options={"lambda_": lam}))
    text = method_table([study, *sorted(methods.glob("lora-s*"))])
    assert [ln.split("|")[1].strip() for ln in text.splitlines() if ln.startswith("| `")][:3] == ["`l100`", "`l1`",
                                                                                                   "`lora`"]
    assert "disco" not in text and _row(text, "l100")[1] == "`ewc` (lambda_ 100)"
    assert _row(text, "l1")[-1].startswith("+") and "**" not in _row(text, "l1")[-1]  # within lora's spread
    for s in range(3):  # a second sweep that also has a lora
        _run(tmp_path / "other" / f"lora-s{s}", s, 80, 10, _cfg(s))
    text = method_table([methods, tmp_path / "other"], baseline="methods/lora")
    assert "| `methods/lora` |" in text and "| `other/lora` |" in text and "| `disco` |" in text


def test_a_run_from_edited_code_is_named_so(tmp_path):
    root = _sweep(tmp_path / "sweep")
    env = root / "lora-s1" / "env.json"
    env.write_text(env.read_text().replace('"coin_commit"', '"coin_dirty": true, "coin_commit"'))
    assert "coin abcdef1, abcdef1 with edits (each run's `env.json`)" in method_table(root)


def test_a_list_option_equal_to_its_default_is_not_named(tmp_path):
    root = tmp_path / "sweep"
    for s in range(2):
        _run(root / f"asd-s{s}", s, 80, 20, _cfg(s, "asd", method_options={
            "styles": ["yn", "mcq", "short", "brief", "detail"], "share": 0.5}))  # SEFE's five: the default
    assert _row(method_table(root, baseline="asd"), "asd")[1] == "`asd` (share 0.5)"


def test_a_malformed_routing_record_is_named(tmp_path):
    root = _sweep(tmp_path / "sweep")
    bad = root / "disco-s1" / "stages" / "03-C" / "routing.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="routing.json"):
        method_table(root)
