"""The pretrained tiny base shipped in the package: it loads, it is the one the code's recipe makes, and it is
used only where it fits (the default recipe, no base of one's own in the cache, not for ``coin model prepare``)."""

from __future__ import annotations

import shutil

import pytest

from coin.config_load import from_dict
from coin.models.tiny import base_files, ship
from coin.models.tiny.backbone import Tiny
from coin.models.tiny.pretrain import base_key, load_or_pretrain, recipe_trace

pytestmark = pytest.mark.skipif(ship.record() is None, reason="this install ships no tiny base")


def _default_model():
    return from_dict({}).model  # what `coin run` with no config runs


def test_the_shipped_base_is_the_default_recipe_s_and_its_files_match_their_sha256():
    rec = ship.record()
    assert rec["key"] == base_key(_default_model())
    assert ship.shipped_base(rec["key"]) == ship.FOLDER
    assert "model.safetensors" in rec["sha256"] and rec["command"].startswith("python -m coin.models.tiny.ship")
    assert ship.shipped_base("another-recipe") is None  # a config with another recipe pretrains its own


def test_the_first_steps_of_a_fresh_pretraining_match_the_recorded_curve():
    recorded = ship.record()["trace"]
    fresh = recipe_trace(_default_model(), len(recorded["lm"]))
    assert len(fresh["vision"]) == len(recorded["vision"]) == len(fresh["lm"]) > 0
    for stage in ("vision", "lm"):
        assert fresh[stage] == pytest.approx(recorded[stage], rel=1e-4), stage


def test_an_empty_cache_loads_the_shipped_base_and_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("COIN_CACHE", str(tmp_path))
    said = []
    vlm, path = load_or_pretrain(_default_model(), said.append, progress=False)
    assert path == ship.FOLDER and "shipped with coin" in said[0]
    assert not (tmp_path / "base").exists()  # nothing pretrained, nothing written
    assert sum(p.numel() for p in vlm.model.parameters()) > 1_000_000


def test_coin_model_prepare_pretrains_its_own_and_a_sweep_s_prepare_takes_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.setenv("COIN_CACHE", str(tmp_path))
    started = []

    def pretrain(cfg, out, log=print, progress=True):
        started.append(out)
        raise RuntimeError("pretraining started")

    monkeypatch.setattr("coin.models.tiny.pretrain.pretrain", pretrain)
    Tiny.prepare(_default_model(), log=lambda m: None)  # a sweep warming its caches
    assert started == []
    with pytest.raises(RuntimeError, match="pretraining started"):
        Tiny.prepare(_default_model(), log=lambda m: None, own=True)  # coin model prepare
    assert started == [tmp_path / "base" / f"tiny-{base_key(_default_model())}"]


def test_a_damaged_shipped_file_is_named_instead_of_used(tmp_path, monkeypatch):
    copy = tmp_path / "base"
    shutil.copytree(ship.FOLDER, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    key = ship.record()["key"]
    monkeypatch.setattr(base_files, "FOLDER", copy)
    with pytest.raises(ValueError, match="model.safetensors is missing or differs from its sha256"):
        base_files.shipped_base(key)
