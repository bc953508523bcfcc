"""A pretraining killed part-way resumes and ends where an uninterrupted one does.

Pretraining the tiny base takes half an hour on two cores (and the 4x base of the size study
about four times that); a kill used to throw all of it away.
"""

from __future__ import annotations

import json
import pytest
import torch
from safetensors.torch import load_file

import coin.models.tiny.pretrain as pretrain_mod
import coin.models.tiny.vision_pretrain as vision_mod
from coin.config_load import from_dict
from coin.models.tiny.fit import fit


class Killed(Exception):
    pass


def _toy():
    torch.manual_seed(0)
    x, w_true = torch.randn(40, 5), torch.randn(5, 1)
    y = x @ w_true + 0.1 * torch.randn(40, 1)
    w = torch.nn.Parameter(torch.zeros(5, 1))
    b = torch.nn.Parameter(torch.zeros(1))
    return x, y, [w, b]


def _fit(params, x, y, kill_at=None, checkpoint=None):
    seen = []

    def loss_of(idx):
        if kill_at is not None and len(seen) == kill_at:
            raise Killed
        seen.append(idx)
        return ((x[idx] @ params[0] + params[1] - y[idx]) ** 2).mean()

    last = fit(params, loss_of, len(x), steps=20, batch_size=6, lr=0.05, warmup=3, seed=1, desc="toy",
               progress=False, checkpoint=checkpoint, every=5)
    return last, seen


def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_weights(tmp_path):
    x, y, ref = _toy()
    ref_loss, ref_batches = _fit(ref, x, y)

    _, _, params = _toy()
    ckpt = tmp_path / "toy.ckpt"
    with pytest.raises(Killed):
        _fit(params, x, y, kill_at=13, checkpoint=ckpt)  # saved at step 10, killed at 13
    assert ckpt.is_file()
    _, _, fresh = _toy()  # a new process: fresh weights, the checkpoint on disk
    loss, batches = _fit(fresh, x, y, checkpoint=ckpt)
    assert batches == ref_batches[10:]  # the same batches from step 10 on
    assert loss == ref_loss
    for a, b in zip(fresh, ref):
        assert torch.equal(a, b)


def test_a_checkpoint_of_other_weights_is_refused_by_name(tmp_path):
    x, y, params = _toy()
    ckpt = tmp_path / "toy.ckpt"
    with pytest.raises(Killed):
        _fit(params, x, y, kill_at=7, checkpoint=ckpt)
    other = [torch.nn.Parameter(torch.zeros(3, 1))]
    with pytest.raises(ValueError, match="toy.ckpt.*do not match"):
        fit(other, lambda idx: other[0].sum(), 10, steps=20, batch_size=2, lr=0.1, warmup=1, seed=0, desc="x",
            progress=False, checkpoint=ckpt)
    ckpt.write_bytes(b"not a checkpoint")  # a damaged file is named, not trained over
    with pytest.raises(ValueError, match="toy.ckpt: not a readable checkpoint"):
        _fit(params, x, y, checkpoint=ckpt)


def _patched_fit(monkeypatch, kill_desc=None, kill_at=None):
    """fit() with a checkpoint every 2 steps, and a kill at step ``kill_at`` of the stage ``kill_desc``."""
    real = fit

    def wrapped(params, loss_of, n, **kw):
        kw["every"] = 2
        if kw["desc"] == kill_desc:
            calls = []

            def dying(idx):
                if len(calls) == kill_at:
                    raise Killed
                calls.append(idx)
                return loss_of(idx)

            return real(params, dying, n, **kw)
        return real(params, loss_of, n, **kw)

    monkeypatch.setattr(pretrain_mod, "fit", wrapped)
    monkeypatch.setattr(vision_mod, "fit", wrapped)


@pytest.mark.parametrize("stage", ["pretrain vision", "pretrain base"])
def test_a_killed_pretraining_resumes_to_the_same_base(tmp_path, monkeypatch, micro_config, stage):
    cfg = from_dict(micro_config).model
    quiet = lambda *a: None  # noqa: E731
    _patched_fit(monkeypatch)
    pretrain_mod.pretrain(cfg, tmp_path / "ref", quiet, progress=False)

    out = tmp_path / "base"
    _patched_fit(monkeypatch, kill_desc=stage, kill_at=3)
    with pytest.raises(Killed):
        pretrain_mod.pretrain(cfg, out, quiet, progress=False)
    work = tmp_path / "base.partial"
    assert not out.exists() and (work / "processor").is_dir()
    assert (work / ("vision.ckpt" if stage == "pretrain vision" else "lm.ckpt")).is_file()

    logs = []
    _patched_fit(monkeypatch)
    pretrain_mod.pretrain(cfg, out, logs.append, progress=False)
    assert any("resuming the interrupted pretraining" in m for m in logs)
    assert any(m.startswith(f"{stage}: resumed at step 2/") for m in logs)  # the last checkpoint before the kill
    assert any(m.startswith("pretrain base: step 4/12, loss ") for m in logs)  # no progress bar: a line per checkpoint
    assert (out / "COMPLETE").is_file() and not work.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())
    ref, got = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert (out / "tokenizer.json").read_text() == (tmp_path / "ref" / "tokenizer.json").read_text()


def test_model_prepare_pretrains_the_base_ahead_and_then_finds_it(tmp_path, monkeypatch, micro_config, capsys):
    import yaml

    from coin.cli import main
    from coin.models.tiny.pretrain import base_key

    monkeypatch.setenv("COIN_CACHE", str(tmp_path / "cache"))
    cfg_file = tmp_path / "micro.yaml"
    cfg_file.write_text(yaml.safe_dump(micro_config))
    before = torch.get_num_threads()
    try:
        assert main(["model", "prepare", "--config", str(cfg_file), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(before)  # --threads sets the whole process's count
    err = capsys.readouterr().err
    base = tmp_path / "cache" / "base" / f"tiny-{base_key(from_dict(micro_config).model)}"
    assert "pretraining the tiny base model" in err and (base / "COMPLETE").is_file()
    assert json.loads((base / "COMPLETE").read_text())["threads"] == 1
    assert main(["model", "prepare", "--config", str(cfg_file)]) == 0
    assert "using the cached tiny base" in (err := capsys.readouterr().err) and "(pretrained at 1 torch threads)" in err

