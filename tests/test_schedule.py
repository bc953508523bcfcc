"""Learning-rate schedules (``train.schedule``): the lr of every optimiser step against its closed form.

The closed forms are written here from the sources, independently of coin.schedule:
coin's cosine and constant with linear warm-up, and DeepSpeed's ``WarmupLR`` (log warm-up,
``warmup_min_lr`` 0) as the Hugging Face Trainer ran it in CoIN's scripts: warm-up steps
``ceil(warmup_ratio x steps)`` (``TrainingArguments.get_warmup_steps``), raised to 2 by WarmupLR,
the scheduler stepped after each optimiser step and never before the first one.
"""

from __future__ import annotations

import math

import pytest
import torch

from coin.config import ConfigError, TrainConfig
from coin.config_load import from_dict
from coin.schedule import SCHEDULES, factors


def closed_form(name: str, k: int, total: int, ratio: float, lr: float) -> float:
    """The lr of optimiser step ``k`` (1-based) of a stage of ``total`` steps."""
    if name == "warmup_lr":
        if k == 1:  # WarmupLR had not set the optimiser's lr yet: DeepSpeed built it with the learning rate
            return lr
        w = max(2, math.ceil(ratio * total))
        return lr * min(1.0, math.log(k - 1) / math.log(w))
    w = max(1, math.ceil(ratio * total))
    if k <= w:
        return lr * k / w
    if name == "constant":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * min((k - 1 - w) / max(total - w, 1), 1.0)))


def lrs_as_the_loop_steps(name: str, total: int, ratio: float, lr: float) -> list[float]:
    """The lr each optimiser step ran at, stepping as ``train_stage`` does (optimiser, then scheduler)."""
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factors(name, total, ratio))
    used = []
    for _ in range(total):
        used.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return used


CASES = [(1, 0.03), (2, 0.0), (3, 0.5), (15, 0.03), (34, 0.03), (100, 0.03), (100, 0.01), (250, 0.1)]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("total,ratio", CASES)
def test_every_step_s_lr_is_the_closed_form(name, total, ratio):
    used = lrs_as_the_loop_steps(name, total, ratio, 2e-4)
    want = [closed_form(name, k, total, ratio, 2e-4) for k in range(1, total + 1)]
    assert used == pytest.approx(want, rel=1e-12, abs=1e-18)


def test_warmup_lr_follows_deepspeed_s_steps():
    """100 steps at 3%: W = 3. Step 1 at the full lr (WarmupLR had not run yet), step 2 at 0 (its
    log(1)), then log(k-1)/log(3), full from step 4 on; 15 steps at 3% (ceil gives 1): W raised to 2."""
    used = lrs_as_the_loop_steps("warmup_lr", 100, 0.03, 1.0)
    assert used[:4] == pytest.approx([1.0, 0.0, math.log(2) / math.log(3), 1.0])
    assert set(used[3:]) == {1.0}
    assert lrs_as_the_loop_steps("warmup_lr", 15, 0.03, 1.0)[:3] == [1.0, 0.0, 1.0]


def test_the_default_cosine_is_coin_s_former_schedule_exactly():
    """The default must not move a number of the default CoIN-Synth run: the factors are equal, not close,
    to the function train.py used before schedules had names."""

    def former(total: int, warmup: int):
        def f(s: int) -> float:
            if s < warmup:
                return (s + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min((s - warmup) / max(total - warmup, 1), 1.0)))
        return f

    assert TrainConfig().schedule == "cosine"
    for total, ratio in CASES:
        old, new = former(total, max(1, math.ceil(ratio * total))), factors("cosine", total, ratio)
        assert [new(s) for s in range(total + 3)] == [old(s) for s in range(total + 3)]


def test_train_stage_logs_the_closed_form_lr_at_every_step(tmp_path):
    """The loop itself: the lr it reports for each optimiser step (the one that step used) is the formula's."""
    from tinyvlm import tiny_samples, tiny_vlm

    from coin.adapters import attach_adapter
    from coin.config import AdapterConfig
    from coin.engine.train import train_stage
    from coin.methods import StageContext

    samples = tiny_samples(tmp_path, "ColourA", 12)
    for name in ("warmup_lr", "constant"):
        vlm = tiny_vlm(seed=0)
        attach_adapter(vlm, AdapterConfig(r=2, alpha=4))
        cfg = TrainConfig(batch_size=1, lr=1e-3, schedule=name, warmup_ratio=0.2, checkpoint_every=0, num_workers=0)
        seen: list[tuple[int, float]] = []
        train_stage(StageContext(vlm=vlm, task="ColourA", stage=0, tasks=["ColourA"]), samples, cfg, [], seed=0,
                    progress=False, on_step=lambda done, total, v: seen.append((done, v["lr"])))
        assert [k for k, _ in seen] == list(range(1, 13))
        assert [lr for _, lr in seen] == pytest.approx([closed_form(name, k, 12, 0.2, 1e-3) for k in range(1, 13)])


def test_an_unknown_schedule_is_named_with_the_choices():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"schedule": "cosin"}})
    assert e.value.problems == ["train.schedule must be one of cosine, constant, warmup_lr, got 'cosin' "
                                "(did you mean 'cosine'?)"]
    assert from_dict({"train": {"schedule": "warmup_lr"}}).train.schedule == "warmup_lr"


def test_the_dry_run_names_the_schedule(tmp_path, capsys, monkeypatch):
    from coin.cli import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    main(["run", "--dry-run", "--out", str(tmp_path / "r"), "--set", "train.schedule=warmup_lr"])
    out = capsys.readouterr().out
    assert "schedule: lr 0.002, warmup_lr (DeepSpeed WarmupLR" in out
    main(["run", "--dry-run", "--out", str(tmp_path / "r")])
    assert "schedule: lr 0.002, cosine (cosine to 0 after a linear warm-up), warm-up 3%" in capsys.readouterr().out


def test_the_paper_recipes_use_the_schedule_coin_s_scripts_ran():
    """Every CoIN train script passes --deepspeed scripts/zero3_offload.json: its WarmupLR wins over cosine."""
    from test_real_configs import COIN_CONFIGS

    from coin.config_load import load_config

    assert len(COIN_CONFIGS) >= 30
    for path in COIN_CONFIGS:
        assert load_config(path).train.schedule == "warmup_lr", path
