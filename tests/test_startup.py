"""Startup under a launcher: the data check runs before the process group's first collective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coin.cli import main
from coin.config import DataConfig
from coin.config_load import from_dict


class _Stop(Exception):
    pass


def test_the_data_check_comes_before_the_process_group(monkeypatch, tmp_path, micro_config):
    """The main process reads every file and image before joining the group; joining it first made
    the other processes wait at a collective, under its timeout, through the whole check."""
    import coin.benchmarks.check as check
    import coin.engine.dist as dist
    import coin.engine.run as run_mod

    events = []
    real_check, real_init = check.check_data, dist.init
    monkeypatch.setattr(check, "check_data", lambda *a, **k: events.append("check") or real_check(*a, **k))
    monkeypatch.setattr(dist, "init", lambda *a, **k: events.append(("init",) + a) or real_init(*a, **k))
    monkeypatch.setattr(dist, "barrier", lambda: events.append("barrier"))

    def stop(*a, **k):
        raise _Stop

    monkeypatch.setattr(run_mod, "load_model", stop)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(micro_config))
    with pytest.raises(_Stop):
        main(["run", "--quiet", "--fresh", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")])
    assert events[0] == "check", events
    assert events[1] == ("init", dist.STARTUP_TIMEOUT)
    assert events.count("check") == 1  # checked once, not again while loading


def test_only_the_main_process_checks(monkeypatch, tmp_path, micro_config):
    import coin.benchmarks.check as check
    import coin.engine.dist as dist
    import coin.engine.run as run_mod

    cfg = from_dict(micro_config)
    run_mod.verify_data(cfg.data, ["ImageNet", "Grounding"])  # the main process's check (and CoIN-Synth)
    calls = []
    monkeypatch.setattr(check, "check_data", lambda *a, **k: calls.append(1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(dist, "init", lambda *a, **k: None)
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(run_mod, "load_model", lambda *a, **k: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        run_mod.run(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert calls == []


def test_images_are_stat_ed_by_default_and_opened_on_request(tmp_path, micro_config):
    """``exists`` is the default: reading every header of a large tree on network storage takes
    longer than a launcher's patience; ``open`` also finds files that are not images."""
    from coin.benchmarks.load import verify_data
    from coin.data.coin_json import DataError

    assert DataConfig().check_images == "exists"
    cfg = from_dict(micro_config)
    manifest = verify_data(cfg.data, ["ImageNet"])
    root = Path(manifest.root)
    rel = json.loads((root / "Instructions_Original" / "ImageNet" / "test.json").read_text())[0]["image"]
    image = root / "images" / rel
    good = image.read_bytes()
    try:
        image.write_bytes(b"not an image")
        assert verify_data(cfg.data, ["ImageNet"]).ok
        cfg.data.check_images = "open"
        with pytest.raises(DataError, match="unreadable image"):
            verify_data(cfg.data, ["ImageNet"])
    finally:
        image.write_bytes(good)


def test_a_folder_continues_under_another_operational_setting(tmp_path, micro_config):
    """``data.check_images`` and ``train.num_workers`` change how a run works, not its numbers:
    a folder written with ``open`` (the old default) continues under ``exists``."""
    from coin.engine.run_folder import RunFolderError, prepare_run_dir

    old = dict(micro_config, data={**micro_config["data"], "check_images": "open"})
    prepare_run_dir(tmp_path, from_dict(old))
    new = dict(micro_config, train={**micro_config["train"], "num_workers": 2})
    prepare_run_dir(tmp_path, from_dict(new))
    with pytest.raises(RunFolderError, match="train.lr"):
        prepare_run_dir(tmp_path, from_dict(dict(new, train={**new["train"], "lr": 0.5})))
