"""``coin sweep --data-seeds`` (#32): each run draws its own CoIN-Synth data, so the ± covers the test set too.

The runs themselves are replaced by a recorder (the plan, not the training, is under test).
"""

from __future__ import annotations

import pytest
import yaml

from coin.cli import main
from coin.errors import ConfigError


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump({"name": "lora", "data": {"synth": {"n_train": 8, "n_test": 4}}}))
    return path


@pytest.fixture
def started(monkeypatch):
    """The configs the sweep would run, in order (nothing trains)."""
    import coin.engine.run

    seen = []
    monkeypatch.setattr(coin.engine.run, "run", lambda cfg, run_dir, **kw: seen.append((run_dir.name, cfg)))
    return seen


def test_data_seeds_give_each_run_its_own_synth_data(config, tmp_path, started):
    from coin.engine.sweep import sweep

    sweep([str(config)], [0, 1, 2], tmp_path / "fixed", progress=False, log=lambda *a: None)
    assert [(n, c.seed, c.data.synth.seed) for n, c in started] == [("lora-s0", 0, 0), ("lora-s1", 1, 0),
                                                                     ("lora-s2", 2, 0)]
    started.clear()
    sweep([str(config)], [0, 1, 2], tmp_path / "varied", progress=False, log=lambda *a: None, data_seeds=True)
    assert [(n, c.seed, c.data.synth.seed) for n, c in started] == [("lora-s0", 0, 0), ("lora-s1", 1, 1),
                                                                     ("lora-s2", 2, 2)]


def test_data_seeds_in_parallel_runs(config, tmp_path, monkeypatch):
    """``--jobs N``: each run's own process is told its data seed too."""
    import coin.engine.sweep as sweep_mod

    commands = []

    class Done:
        returncode = 0

        def __init__(self, cmd, **kw):
            commands.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(sweep_mod, "_warm_caches", lambda plans, log: None)
    monkeypatch.setattr(sweep_mod.subprocess, "Popen", Done)
    sweep_mod.sweep([str(config)], [3, 4], tmp_path / "sw", progress=False, log=lambda *a: None, jobs=2, threads=1,
                    data_seeds=True)
    assert [c[c.index("seed=" + c[-1].split("=")[1]) - 1:] for c in commands] == \
        [["--set", "seed=3", "--set", "data.synth.seed=3"], ["--set", "seed=4", "--set", "data.synth.seed=4"]]


def test_data_seeds_need_generated_data(tmp_path, started):
    from coin.engine.sweep import sweep

    real = tmp_path / "coin.yaml"
    real.write_text(yaml.safe_dump({"data": {"benchmark": "coin", "root": str(tmp_path)}}))
    with pytest.raises(ConfigError, match="--data-seeds varies CoIN-Synth's generated data.*coin.yaml"):
        sweep([str(real)], [0, 1], tmp_path / "sw", progress=False, log=lambda *a: None, data_seeds=True)
    synth = tmp_path / "synth.yaml"
    synth.write_text("name: s\n")
    with pytest.raises(ConfigError, match="--data-seeds sets data.synth.seed"):
        sweep([str(synth)], [0, 1], tmp_path / "sw", ["data.synth.seed=5"], progress=False, log=lambda *a: None,
              data_seeds=True)
    assert started == []  # refused before any run starts


def test_the_cli_flag(config, tmp_path, monkeypatch, capsys):
    import coin.api

    got = {}
    monkeypatch.setattr(coin.api, "sweep", lambda *a, **kw: got.update(args=a, kw=kw) or tmp_path / "report.md")
    assert main(["sweep", str(config), "--seeds", "0", "1", "2", "--data-seeds", "--out", str(tmp_path)]) == 0
    assert got["args"][1] == [0, 1, 2] and got["kw"]["data_seeds"] is True
    assert main(["sweep", str(config), "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    assert got["kw"]["data_seeds"] is False
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "--data-seeds" in capsys.readouterr().out
