"""``coin sweep``: configs x seeds, in one process or several at a time, then one comparison."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from coin.config_load import load_config
from coin.api import run
from coin.api import sweep
from coin.engine.sweep import SweepError


@pytest.fixture
def configs(tmp_path, micro_config):
    micro_config.pop("seed")
    a = tmp_path / "lora.yaml"
    a.write_text(yaml.safe_dump(micro_config))
    return [a]


def test_parallel_sweep_equals_runs_made_one_by_one(configs, tmp_path):
    logs: list[str] = []
    report = sweep([str(c) for c in configs], [0, 1], tmp_path / "sw", progress=False, log=logs.append,
                   jobs=2, threads=1)
    assert report.is_file() and "lora-s0, lora-s1" in report.read_text()
    assert sum(m.startswith("started") for m in logs) == 2 and sum(m.startswith("finished") for m in logs) == 2
    assert (tmp_path / "sw" / "logs" / "lora-s0.log").is_file()
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the parallel runs used one thread each: the same float sums
    try:
        for seed in (0, 1):
            ref = run(load_config(configs[0], [f"seed={seed}"]), tmp_path / f"ref{seed}", progress=False,
                      log=lambda *a: None)
            got = json.loads((tmp_path / "sw" / f"lora-s{seed}" / "matrix.json").read_text())
            assert got["matrix"] == ref["matrix"] and got["seed"] == seed
    finally:
        torch.set_num_threads(old)
    again: list[str] = []
    sweep([str(c) for c in configs], [0, 1], tmp_path / "sw", progress=False, log=again.append, jobs=2, threads=1)
    assert again[0].startswith("2 of 2 runs finished earlier")


def test_caches_fill_with_all_the_threads_the_parallel_runs_will_share(configs, tmp_path, monkeypatch):
    # `coin sweep --jobs 2 --threads 1` pretrained the tiny base (tens of minutes) on one thread
    # while the second core idled: the CLI's --threads is per run, and it set the main process's.
    import coin.engine.sweep as sweep_mod

    class Stop(Exception):
        pass

    seen = []

    def warm(plans, log):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(sweep_mod, "_warm_caches", warm)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(Stop):
            sweep([str(c) for c in configs], [0], tmp_path / "sw", progress=False, log=lambda *a: None,
                  jobs=2, threads=1)
        assert seen == [2] and torch.get_num_threads() == 1  # and the thread count is restored
    finally:
        torch.set_num_threads(old)


def test_a_failed_run_is_named_with_its_log(configs, tmp_path):
    bad = yaml.safe_load(configs[0].read_text())
    good_data = bad["data"]
    bad["data"] = {"benchmark": "coin", "root": str(tmp_path / "nothing-here")}  # valid config, no data
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(Exception, match="nothing-here"):  # found while filling the caches, before any process
        sweep([str(path)], [0], tmp_path / "sw", progress=False, log=lambda *a: None, jobs=2, threads=1)
    bad["data"] = good_data
    bad["train"]["lr"] = 1e30  # the loss blows up inside the run's own process
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(SweepError, match=r"1 run\(s\) failed: broken-s0; logs in"):
        sweep([str(path)], [0], tmp_path / "sw2", progress=False, log=lambda *a: None, jobs=2, threads=1)
    assert "loss is" in (tmp_path / "sw2" / "logs" / "broken-s0.log").read_text()


def test_reuse_takes_a_finished_twin_and_only_a_twin(configs, tmp_path):
    base = yaml.safe_load(configs[0].read_text())
    sweep([str(configs[0])], [0], tmp_path / "methods", progress=False, log=lambda *a: None, jobs=2, threads=1)
    twin, other = dict(base, name="rank-32"), dict(base, name="rank-64")
    other["train"] = dict(base["train"], lr=base["train"]["lr"] / 2)
    (tmp_path / "r32.yaml").write_text(yaml.safe_dump(twin))
    (tmp_path / "r64.yaml").write_text(yaml.safe_dump(other))
    logs: list[str] = []
    sweep([str(tmp_path / "r64.yaml"), str(tmp_path / "r32.yaml")], [0], tmp_path / "study", progress=False,
          log=logs.append, jobs=2, threads=1, reuse=[tmp_path / "methods"])
    assert [m for m in logs if m.startswith("reused")] == [f"reused   r32-s0 from {tmp_path / 'methods' / 'lora-s0'}"]
    # the reused run goes first (it only writes its matrix from the copied stages)
    assert [m for m in logs if m.startswith("started")] == ["started  r32-s0 (1 thread)", "started  r64-s0 (1 thread)"]
    src = json.loads((tmp_path / "methods" / "lora-s0" / "matrix.json").read_text())
    got = json.loads((tmp_path / "study" / "r32-s0" / "matrix.json").read_text())
    assert got["matrix"] == src["matrix"] and got["knowledge"] == src["knowledge"] and got["run_name"] == "rank-32"
    assert load_config(tmp_path / "study" / "r32-s0" / "config.yaml").name == "rank-32"
    record = json.loads((tmp_path / "study" / "r32-s0" / "reused-from.json").read_text())
    assert record["source"] == "../../methods/lora-s0" and record["source_run"] == "lora-s0"  # no machine's path
    assert (tmp_path / "study" / "r32-s0" / record["source"]).resolve() == (tmp_path / "methods" / "lora-s0").resolve()
    # the twin assembled from the copied stages: no stage trained again
    assert "steps in" not in (tmp_path / "study" / "logs" / "r32-s0.log").read_text()
    assert "steps in" in (tmp_path / "study" / "logs" / "r64-s0.log").read_text()
    theirs = json.loads((tmp_path / "study" / "r64-s0" / "matrix.json").read_text())
    assert theirs["run_name"] == "rank-64" and not (tmp_path / "study" / "r64-s0" / "reused-from.json").exists()
    # another thread count gives other float sums: not a twin (what a sweep at --threads 2 asks)
    from coin.engine.sweep import find_reusable

    twin_cfg = load_config(tmp_path / "r32.yaml", ["seed=0"])
    assert find_reusable(twin_cfg, 1, [tmp_path / "methods"], log=lambda *a: None) == tmp_path / "methods" / "lora-s0"
    assert find_reusable(twin_cfg, 2, [tmp_path / "methods"], log=lambda *a: None) is None


def test_reuse_names_a_damaged_source_and_passes_it_over(configs, tmp_path):
    from coin.engine.sweep import find_reusable

    src = tmp_path / "methods" / "lora-s0"
    src.mkdir(parents=True)
    for name in ("matrix.json", "report.md"):
        (src / name).write_text("{}")
    (src / "env-history.jsonl").write_text(json.dumps({"threads": 1, "processes": 1}) + "\n")
    (src / "config.yaml").write_text("method: [unclosed\n")
    logs: list[str] = []
    assert find_reusable(load_config(configs[0], ["seed=0"]), 1, [tmp_path / "methods"], logs.append) is None
    assert len(logs) == 1 and logs[0].startswith(f"  not reusable: {src} (")
