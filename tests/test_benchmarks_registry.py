"""The benchmark registry: data.benchmark chosen by name, orders bound per benchmark, listed, shipped configs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from coin.benchmarks import BENCHMARKS, get_benchmark, owner
from coin.cli import main
from coin.config import ConfigError
from coin.config_load import from_dict, load_config
from coin.tasks import ORDERS, TASKS

REPO = Path(__file__).resolve().parent.parent
STREAM_CONFIGS = sorted((REPO / "configs" / "ucit").glob("*.yaml")) + sorted(
    (REPO / "configs" / "mllm-cl").glob("*.yaml"))


def test_every_benchmark_names_registered_tasks_and_its_orders():
    assert set(BENCHMARKS.names()) == {"coin", "synth", "ucit", "mllm-dcl", "mllm-acl"}
    assert get_benchmark("ucit").orders["paper"] == (
        "ImageNet-R", "ArxivQA", "VizWiz-Caption", "IconQA", "CLEVR-Math", "Flickr30k")
    assert get_benchmark("mllm-dcl").orders["paper"] == ("RS", "Med", "AD", "Sci", "Fin")
    assert get_benchmark("mllm-acl").orders["paper"] == ("OCR", "Math", "VP", "APP")
    assert get_benchmark("coin").orders is ORDERS and get_benchmark("coin").tasks == ORDERS["paper"]
    for name in BENCHMARKS:
        assert all(t in TASKS for t in get_benchmark(name).tasks)
    assert owner("Flickr30k") == "ucit" and owner("APP") == "mllm-acl" and owner("GQA") is None


def test_the_default_config_is_unchanged():
    cfg = from_dict({})
    assert cfg.data.benchmark == "synth" and cfg.tasks.order == "paper"


def test_a_benchmark_binds_its_own_paper_order(tmp_path):
    cfg = from_dict({"data": {"benchmark": "ucit", "root": str(tmp_path)}})
    assert cfg.tasks.order == list(get_benchmark("ucit").orders["paper"])
    cfg = from_dict({"data": {"benchmark": "mllm-acl", "root": str(tmp_path)}, "tasks": {"order": "shuffle:3"}})
    assert sorted(cfg.tasks.order) == sorted(("OCR", "Math", "VP", "APP"))
    assert cfg.tasks.order == from_dict({"data": {"benchmark": "mllm-acl", "root": str(tmp_path)},
                                         "tasks": {"order": "shuffle:3"}}).tasks.order


def test_config_problems_name_the_key_and_the_choices(tmp_path):
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "uict"}})
    assert "data.benchmark: unknown benchmark 'uict'. Did you mean 'ucit'?" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "ucit"}})
    assert "data.root is required when data.benchmark is 'ucit'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "ucit", "root": str(tmp_path), "instructions": "diverse"}})
    assert "only 'original' applies" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "ucit", "root": str(tmp_path)}, "tasks": {"order": ["ArxivQA", "GQA"]}})
    assert "tasks.order: GQA is not a task of benchmark 'ucit'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "coin", "root": str(tmp_path)}, "tasks": {"order": ["GQA", "Fin"]}})
    assert "tasks.order: Fin is a task of benchmark 'mllm-dcl'; set data.benchmark: mllm-dcl" in str(e.value)
    with pytest.raises(ConfigError) as e:
        from_dict({"data": {"benchmark": "mllm-dcl", "root": str(tmp_path)}, "tasks": {"order": "alphabet"}})
    assert "benchmark 'mllm-dcl' has the orders paper" in str(e.value)


def test_coin_ls_benchmarks_lists_tasks_and_orders(capsys):
    assert main(["ls", "benchmarks", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)["benchmarks"]["entries"]}
    assert set(entries) == set(BENCHMARKS.names())
    assert entries["ucit"]["facts"]["order paper"] == \
        "ImageNet-R → ArxivQA → VizWiz-Caption → IconQA → CLEVR-Math → Flickr30k"
    assert entries["mllm-acl"]["facts"]["tasks"] == "OCR, Math, VP, APP"
    assert entries["coin"]["facts"]["order alphabet"].startswith("GQA → Grounding")
    assert main(["ls", "benchmarks"]) == 0
    assert "mllm-dcl  MLLM-CL domain stream" in capsys.readouterr().out


def test_the_stream_configs_match_their_generator():
    assert len(STREAM_CONFIGS) == 3 * 17  # three streams x seventeen methods (their MCITlib twins: test_mcitlib_configs)
    spec = importlib.util.spec_from_file_location("coin_stream_configs", REPO / "configs" / "generate_streams.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    assert generate.main(["--check"]) == 0, "configs/ucit or configs/mllm-cl differ from generate_streams.py: rerun it"


@pytest.mark.parametrize("path", STREAM_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_dry_run_of_every_stream_config(path, monkeypatch, tmp_path, capsys):
    """Each config loads, binds its benchmark's order and dry-runs without loading anything, listing its files."""

    def boom(*args, **kwargs):
        raise AssertionError("a dry run must not load a model or data")

    monkeypatch.setattr("coin.engine.run.run", boom)  # first: the engine binds the loaders below at its import
    monkeypatch.setattr("coin.models.load_model", boom)
    monkeypatch.setattr("coin.benchmarks.load.load_benchmark", boom)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    rank = 64 if cfg.method == "keeplora" else 128  # KeepLoRA runs at its released scripts' rank
    assert cfg.model.name == "llava" and cfg.adapter.r == rank and cfg.train.lr == 2e-4
    assert cfg.tasks.order == list(get_benchmark(cfg.data.benchmark).orders["paper"])
    assert main(["run", "--config", str(path), "--dry-run"]) == 1  # nothing is there: missing files listed
    out = capsys.readouterr().out
    first = cfg.tasks.order[0]
    assert f"1     {first:<11}" in out and "MISSING" in out and "scoring (reports lead with paper" in out
