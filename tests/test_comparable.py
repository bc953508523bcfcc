"""``coin report`` compares like with like (#32): seeds, the method and one study variable may differ, nothing else.

Fake run folders (a matrix.json and a config.yaml) under tmp_path; no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coin.cli import main
from coin.errors import IncomparableRuns
from coin.report import write_comparison

TASKS = ["ScienceQA", "TextVQA"]


def _run(root: Path, folder: str, seed: int = 0, ran: list[str] = TASKS, shift: float = 0.0, **sections) -> Path:
    """A run folder of the tasks ``ran``; ``sections`` are merged into its config (``data={"volume": 0.2}``)."""
    d = root / folder
    d.mkdir(parents=True)
    config = {"name": folder.rsplit("-s", 1)[0], "seed": seed, "method": "sequential",
              "tasks": {"order": list(ran)}, "data": {"volume": 1.0}, "adapter": {"r": 32, "alpha": 64}}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    a = 60.0 + shift + 1.5 * seed
    mj = {"tasks": list(ran), "matrix": [[a, None], [a - 20.0 - seed, a + 5.0]], "zero_shot": None,
          "seed": seed, "run_name": config["name"]}
    (d / "matrix.json").write_text(json.dumps(mj))
    return d


def test_methods_compared_at_one_recipe(tmp_path):
    """The method sweep: methods (their options, MoELoRA's adapter type and experts) and seeds differ."""
    runs = [_run(tmp_path, f"lora-s{s}", s) for s in (0, 1)]
    runs += [_run(tmp_path, f"ewc-s{s}", s, method="ewc", method_options={"lambda_": 0.1}) for s in (0, 1)]
    runs += [_run(tmp_path, "moe-s0", adapter={"type": "moelora", "experts": 4})]
    md = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "5 runs in 3 configurations" in md


def test_a_recipe_difference_is_refused_by_name(tmp_path, capsys):
    runs = [_run(tmp_path, "lora-s0"), _run(tmp_path, "ewc-s0", method="ewc", adapter={"r": 8})]
    with pytest.raises(IncomparableRuns) as e:
        write_comparison(runs, tmp_path / "cmp")
    assert "adapter.r: 8 (ewc-s0) vs 32 (lora-s0)" in str(e.value)
    assert not (tmp_path / "cmp").exists()  # refused before anything is written
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coin: error: ") and "adapter.r: 8 (ewc-s0) vs 32 (lora-s0)" in err


@pytest.mark.parametrize("sections, key", [
    ({"data": {"volume": 0.2}}, "data.volume: 0.2 (ewc-s0) vs 1.0 (lora-s0)"),  # data size
    ({"data": {"synth": {"n_train": 300}}}, "data.synth.n_train: 300 (ewc-s0) vs 1500 (lora-s0)"),
    ({"train": {"lr": 1e-4}}, "train.lr: 0.0001 (ewc-s0) vs 0.002 (lora-s0)"),
    ({"model": {"max_length": 512}}, "model.max_length: 512 (ewc-s0) vs None (lora-s0)"),
    ({"eval": {"protocol": {"TextVQA": "single"}}}, "eval.protocol.TextVQA: 'single' (ewc-s0) vs None (lora-s0)"),
    ({"tasks": {"order": TASKS, "eval": "all"}}, "tasks.eval: 'all' (ewc-s0) vs 'seen' (lora-s0)"),
])
def test_two_methods_at_two_recipes_are_refused(tmp_path, sections, key):
    """A method and anything else differing at once: which of the two made the difference? (Values in the
    message: the rarest first, ties by their first run.)"""
    runs = [_run(tmp_path, "lora-s0"), _run(tmp_path, "ewc-s0", method="ewc", **sections)]
    with pytest.raises(IncomparableRuns, match="differ in the method") as e:
        write_comparison(runs, tmp_path / "cmp")
    assert key in str(e.value)


def test_one_study_variable_may_differ(tmp_path):
    """A study sweep: one variable (the keys of one section: the rank and its alpha), the method fixed."""
    runs = [_run(tmp_path, f"r{r}-s{s}", s, adapter={"r": r, "alpha": 2 * r}) for r in (8, 32) for s in (0, 1)]
    md = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "## Study: adapter.alpha + adapter.r" in md
    volume = [_run(tmp_path / "v", f"v{v}-s0", data={"volume": v}) for v in (0.2, 1.0)]
    assert "## Study: data.volume" in write_comparison(volume, tmp_path / "cmp-v").read_text()
    order = [_run(tmp_path / "o", "paper-s0"), _run(tmp_path / "o", "rev-s0", ran=TASKS[::-1])]
    assert "## Study: tasks.order" in write_comparison(order, tmp_path / "cmp-o").read_text()


def test_two_study_variables_are_refused(tmp_path):
    runs = [_run(tmp_path, "a-s0"), _run(tmp_path, "b-s0", data={"volume": 0.2}, train={"lr": 1e-4})]
    with pytest.raises(IncomparableRuns, match="more than one variable") as e:
        write_comparison(runs, tmp_path / "cmp")
    assert "data.volume: 1.0 (a-s0) vs 0.2 (b-s0)" in str(e.value) and "train.lr" in str(e.value)


def test_another_task_set_is_refused(tmp_path):
    runs = [_run(tmp_path, "a-s0"), _run(tmp_path, "b-s0", ran=["ScienceQA", "GQA"])]
    with pytest.raises(IncomparableRuns, match=r"the task set: \['ScienceQA', 'TextVQA'\] \(a-s0\) vs "
                                               r"\['GQA', 'ScienceQA'\] \(b-s0\)"):
        write_comparison(runs, tmp_path / "cmp")


def test_only_the_seeds_are_pooled_not_other_seed_keys(tmp_path):
    """``seed`` and CoIN-Synth's data seed may differ within a row; the base model's pretraining seed is
    the model, not a repetition of it (it was dropped with every key named ``seed``)."""
    runs = [_run(tmp_path, "lora-s0", 0), _run(tmp_path, "lora-s1", 1, data={"synth": {"seed": 1}})]
    md = write_comparison(runs, tmp_path / "cmp").read_text()
    assert "| lora-s0, lora-s1 |" in md
    other = _run(tmp_path, "lora-s2", 2, model={"pretrain": {"seed": 7}})
    md = write_comparison([*runs, other], tmp_path / "cmp2").read_text()
    assert "| lora-s0, lora-s1 |" in md and "| lora-s2 |" in md  # another base model: a row of its own
    ewc = _run(tmp_path, "ewc-s0", 0, method="ewc", model={"pretrain": {"seed": 7}})
    with pytest.raises(IncomparableRuns, match=r"model\.pretrain\.seed: 7 \(ewc-s0\) vs 0 \(lora-s0, lora-s1\)"):
        write_comparison([*runs, ewc], tmp_path / "cmp3")


def test_keys_that_never_change_a_number_may_differ(tmp_path):
    from coin.engine.run_folder import OPERATIONAL_KEYS
    from coin.report.comparable import OPERATIONAL

    assert set(OPERATIONAL) == set(OPERATIONAL_KEYS)  # one list, kept in step with the run folder's
    runs = [_run(tmp_path, "lora-s0", 0, train={"num_workers": 0}, log={"trackers": []}),
            _run(tmp_path, "lora-s1", 1, train={"num_workers": 4}, plugins=["my_plugin"], out_dir="elsewhere")]
    assert "| lora-s0, lora-s1 |" in write_comparison(runs, tmp_path / "cmp").read_text()


def test_the_report_says_what_its_spread_covers(tmp_path):
    fixed = [_run(tmp_path / "f", f"lora-s{s}", s) for s in (0, 1)]
    md = write_comparison(fixed, tmp_path / "cmp-f").read_text()
    assert "The ± is over training seeds only" in md and "coin sweep --data-seeds" in md
    varied = [_run(tmp_path / "v", f"lora-s{s}", s, data={"synth": {"seed": s}}) for s in (0, 1)]
    md = write_comparison(varied, tmp_path / "cmp-v").read_text()
    assert "The ± is over training and data seeds" in md and "training seeds only" not in md
    mixed = [*[_run(tmp_path / "m", f"lora-s{s}", s) for s in (0, 1)],
             *[_run(tmp_path / "m", f"ewc-s{s}", s, method="ewc", data={"synth": {"seed": s}}) for s in (0, 1)]]
    md = write_comparison(mixed, tmp_path / "cmp-m").read_text()
    assert "over training and data seeds for ewc-s0, ewc-s1; over training seeds only for the others" in md


def test_the_shipped_sweeps_compare(tmp_path):
    """Every config folder a README sweep runs compares: the method table and each study."""
    from coin.config_load import load_config
    from coin.report.comparable import Setup, comparison_problems
    from coin.tasks.orders import resolve_order

    root = Path(__file__).resolve().parents[1] / "configs" / "synth"
    folders = [root, *sorted(p for p in (root / "studies").iterdir() if p.is_dir())]
    for folder in folders:
        setups = []
        for path in sorted(folder.glob("*.yaml")):
            cfg = load_config(path, ["seed=1"]).to_dict()
            setups.append(Setup.of(path.stem, cfg, resolve_order(cfg["tasks"]["order"])))
        assert comparison_problems(setups) == [], folder
