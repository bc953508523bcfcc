"""Shared fixtures: an isolated cache and a micro config that runs the whole pipeline in seconds."""

from __future__ import annotations

import os

import pytest


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
def micro_config():
    """A deep copy of the micro config dict (2 tasks, a few samples, a 2-layer model)."""
    import copy

    return copy.deepcopy(MICRO)


@pytest.fixture(scope="session")
def micro_factory():
    """For module-scoped fixtures: a function returning fresh copies of the micro config."""
    import copy

    return lambda: copy.deepcopy(MICRO)
