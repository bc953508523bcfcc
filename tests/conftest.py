"""Shared fixtures: an isolated cache and a micro config that runs the whole pipeline in seconds."""

from __future__ import annotations

import os

import pytest


if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N test processes share the cores; one torch thread each (and in the processes
    # they start) keeps them from oversubscribing the cores, which slows torch several times over
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own COIN_CACHE, so nothing leaks from a user's cache."""
    old = os.environ.get("COIN_CACHE")
    os.environ["COIN_CACHE"] = str(tmp_path_factory.mktemp("coin-cache"))
    yield
    if old is None:
        os.environ.pop("COIN_CACHE", None)
    else:
        os.environ["COIN_CACHE"] = old


MICRO = {
    "seed": 0,
    "data": {"synth": {"n_train": 24, "n_test": 8}},
    "tasks": {"order": ["ImageNet", "Grounding"]},
    "model": {
        "tiny": {"vocab_size": 400, "vision_width": 32, "vision_layers": 1, "vision_heads": 2,
                 "lm_width": 64, "lm_layers": 2, "lm_heads": 2, "lm_ffn": 128},
        "pretrain": {"steps": 12, "samples": 64, "batch_size": 8, "vision_steps": 4, "vision_batch_size": 8},
    },
    "adapter": {"r": 4, "alpha": 8},
    "train": {"batch_size": 8, "lr": 1e-3},
    "eval": {"batch_size": 8, "bootstrap": 50},
}


@pytest.fixture
def no_loading(monkeypatch, tmp_path):
    """For dry runs: an empty working folder (relative paths in a config resolve to nothing), no
    process count, and a failure on any model or data load."""

    def boom(*args, **kwargs):
        raise AssertionError("a dry run must not load a model or data")

    monkeypatch.setattr("coin.engine.run.run", boom)
    monkeypatch.setattr("coin.models.load_model", boom)
    monkeypatch.setattr("coin.benchmarks.load.load_benchmark", boom)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def micro_config():
    """A deep copy of the micro config dict (2 tasks, a few samples, a 2-layer model)."""
    import copy

    return copy.deepcopy(MICRO)


@pytest.fixture(scope="session")
def micro_factory():
    """For module-scoped fixtures: a function returning fresh copies of the micro config."""
    import copy

    return lambda: copy.deepcopy(MICRO)


# the files that take longest (pytest --durations), run first: with ``--dist loadfile`` each file goes
# to one worker, and starting the long ones first keeps one worker from finishing them alone at the end
LONGEST_FIRST = ("test_fsdp.py", "test_distributed.py", "test_resume.py", "test_sweep.py", "test_plugins_model.py",
                 "test_pipeline.py", "test_probes.py", "test_plugins_task.py", "test_methods_bank.py",
                 "test_benchmarks_ucit.py", "test_writes_isolation.py", "test_status.py", "test_backbones.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's order is kept
