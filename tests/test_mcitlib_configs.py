"""MCITlib's LLaVA recipe beside CoIN's for UCIT and MLLM-CL (issue #32 point 8), so a GPU run compares line by line.

MCITlib (Ghy0501/MCITlib, configs/train_configs/LoRA-FT/LLaVA/<bench>/train/task*.json): rank 16 on UCIT and
32 on MLLM-DCL/ACL, alpha = 2r, lr 2e-4 with the projector at 2e-5, effective batch 64 (UCIT) and 16
(MLLM-CL), O-LoRA's lambda_1 0.05. Every method of the CoIN-recipe folder has its MCITlib twin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coin.config_load import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "coin" / "configs"
TWINS = sorted((CONFIGS / "ucit" / "mcitlib").glob("*.yaml")) + sorted((CONFIGS / "mllm-cl" / "mcitlib").glob("*.yaml"))


def test_every_coin_recipe_config_has_its_mcitlib_twin():
    for bench in ("ucit", "mllm-cl"):
        ours = {p.name for p in (CONFIGS / bench).glob("*.yaml")}
        theirs = {p.name for p in (CONFIGS / bench / "mcitlib").glob("*.yaml")}
        assert ours == theirs and len(ours) >= 15


@pytest.mark.parametrize("path", TWINS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_the_mcitlib_recipe(path):
    cfg = load_config(path)
    ucit = path.parent.parent.name == "ucit"
    rank = 64 if cfg.method == "keeplora" else (16 if ucit else 32)  # a method's own rank stays its own
    assert cfg.adapter.r == rank and cfg.adapter.alpha == 2 * rank
    assert cfg.train.lr == 2e-4 and cfg.train.projector_lr == 2e-5
    assert cfg.train.batch_size * cfg.train.grad_accum * 2 == (64 if ucit else 16)  # MCITlib's 2 GPUs
    if cfg.method == "olora":
        assert cfg.method_options["lambda_1"] == 0.05
    assert cfg.name.endswith("-mcitlib")
