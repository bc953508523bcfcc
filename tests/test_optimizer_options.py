"""AdamW's betas and eps (``train.adam_betas``, ``train.adam_eps``) and the Qwen-VL-Chat recipe that needs them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from coin.config import ConfigError, TrainConfig
from coin.config_load import from_dict, load_config

REPO = Path(__file__).resolve().parent.parent


def test_the_defaults_are_torch_s_so_nothing_changes():
    defaults = inspect.signature(torch.optim.AdamW).parameters
    t = TrainConfig()
    assert tuple(t.adam_betas) == defaults["betas"].default and t.adam_eps == defaults["eps"].default


@pytest.mark.parametrize("train,problem", [
    ({"adam_betas": [0.9]}, "train.adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got [0.9]"),
    ({"adam_betas": [0.9, 1.0]}, "train.adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got [0.9, 1.0]"),
    ({"adam_betas": [-0.1, 0.9]}, "train.adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got [-0.1, 0.9]"),
    ({"adam_betas": [float("nan"), 0.9]},
     "train.adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got [nan, 0.9]"),
    ({"adam_betas": [True, 0.9]}, "train.adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got [True, 0.9]"),
    ({"adam_betas": 0.9}, "train.adam_betas must be list, got 0.9"),
    ({"adam_eps": 0}, "train.adam_eps must be a finite number > 0, got 0.0"),
    ({"adam_eps": float("inf")}, "train.adam_eps must be a finite number > 0, got inf"),
])
def test_bad_values_are_named_by_their_key(train, problem):
    with pytest.raises(ConfigError) as e:
        from_dict({"train": train})
    assert e.value.problems == [problem]


def test_the_training_loop_builds_adamw_with_them(tmp_path, monkeypatch):
    from tinyvlm import tiny_samples, tiny_vlm

    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.engine.train import train_stage
    from coin.methods import StageContext

    built = []
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        opt = real(*args, **kwargs)
        built.append(opt.defaults)
        return opt

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, AdapterConfig(r=2, alpha=4))
    cfg = from_dict({"train": {"batch_size": 4, "adam_betas": [0.8, 0.95], "adam_eps": 1e-6, "weight_decay": 0.1,
                               "checkpoint_every": 0, "num_workers": 0}}).train
    train_stage(StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"]), tiny_samples(tmp_path, "ColourA", 4),
                cfg, [], seed=0, progress=False)
    assert len(built) == 1
    assert (built[0]["betas"], built[0]["eps"], built[0]["weight_decay"]) == ((0.8, 0.95), 1e-6, 0.1)


def test_the_qwen_vl_chat_configs_use_coin_s_qwen_script_values():
    """scripts/Qwen/Train/*.sh: --weight_decay 0.1 --adam_beta2 0.95 --warmup_ratio 0.01 (beta1: the Trainer's 0.9)."""
    folder = REPO / "configs" / "coin" / "qwen-vl-chat"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) == 3
    for path in files:
        t = load_config(path).train
        assert (t.weight_decay, t.adam_betas, t.adam_eps, t.warmup_ratio, t.lr) == (0.1, [0.9, 0.95], 1e-8, 0.01,
                                                                                   1e-5), path
        assert "not confirmed" not in path.read_text(), path
    readme = (REPO / "configs" / "coin" / "README.md").read_text()
    assert "weight decay for Qwen-VL were not confirmed" not in readme
