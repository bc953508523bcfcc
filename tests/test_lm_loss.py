"""The LM head runs only where there is a label (#30, point 2; ``coin.engine.lm_loss``).

The loss over the labelled positions' logits is transformers' full-logits loss (to float round-off),
its gradients too, for LLaVA and Qwen2-VL; a training step of a run projects only those positions
onto the vocabulary (a hook on the LM head counts its rows), where it projected every position of
every row before; ``train.logits: all`` keeps the full logits.
"""

from __future__ import annotations

import pytest
import torch

import tinyhf
from coin.adapters import attach_adapter
from coin.config_load import from_dict, section
from coin.engine.lm_loss import forward_with_loss, keep_mask, labelled_loss, supports_labelled
from tinyvlm import tiny_samples, tiny_vlm


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(model, batch):
    model.zero_grad(set_to_none=True)
    full = model(**batch)
    full.loss.backward()
    g_full = _grads(model)
    model.zero_grad(set_to_none=True)
    part = labelled_loss(model, batch)
    part.loss.backward()
    g_part = _grads(model)
    n = int(keep_mask(batch["labels"]).sum())
    assert part.logits.shape == (n, full.logits.shape[-1]) and 0 < n < batch["labels"].numel() // 4
    torch.testing.assert_close(part.loss, full.loss, rtol=1e-6, atol=1e-6)
    assert g_full.keys() == g_part.keys() and g_full
    for k in g_full:
        torch.testing.assert_close(g_part[k], g_full[k], rtol=1e-5, atol=1e-7)
    # the kept rows are the full logits' rows whose next token is labelled
    torch.testing.assert_close(part.logits, full.logits[keep_mask(batch["labels"])], rtol=1e-5, atol=1e-6)


def test_llava_labelled_loss_equals_the_full_loss(tmp_path):
    vlm = tiny_vlm()
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    samples = tiny_samples(tmp_path, "GQA", 3) + tiny_samples(tmp_path, "VQA", 2)
    assert supports_labelled(vlm.model)
    _compare(vlm.model, vlm.train_batch(samples))


def test_qwen2_vl_labelled_loss_equals_the_full_loss(tmp_path):
    from coin.models.chat.wrapper import load_chat_vlm

    vlm = load_chat_vlm(section("model", name="qwen2-vl", path=str(tinyhf.build_qwen2_vl(tmp_path / "qwen"))))
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    samples = tiny_samples(tmp_path / "img", "GQA", 2) + tiny_samples(tmp_path / "img", "VQA", 2)
    assert supports_labelled(vlm.model)
    _compare(vlm.model, vlm.train_batch(samples))


def test_a_micro_batch_without_labels_gives_a_zero_loss_with_a_graph(tmp_path):
    vlm = tiny_vlm()
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    batch = vlm.train_batch(tiny_samples(tmp_path, "GQA", 2))
    batch["labels"][:] = -100
    out = labelled_loss(vlm.model, batch)
    assert out.loss.item() == 0.0 and out.loss.requires_grad


@pytest.mark.parametrize("mode", ["labelled", "all"])
def test_a_run_s_training_step_projects_only_the_labelled_positions(micro_config, tmp_path, monkeypatch, mode):
    """Through the engine: the LM head's rows per training forward are the labelled positions (default),
    or every position of every row with ``train.logits: all``."""
    import coin.engine.train as train

    seen: list[tuple[int, int, int]] = []  # (rows projected, labelled positions, all positions)
    real = train.forward_with_loss

    def spy(model, batch, logits_mode="labelled"):
        rows: list[int] = []
        handle = model.get_output_embeddings().register_forward_hook(
            lambda module, args, output: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
        try:
            out = real(model, batch, logits_mode)
        finally:
            handle.remove()
        seen.append((rows[-1], int(keep_mask(batch["labels"]).sum()), batch["labels"].numel()))
        return out

    monkeypatch.setattr(train, "forward_with_loss", spy)
    micro_config["tasks"]["order"] = ["ImageNet"]
    micro_config["eval"]["zero_shot"] = False
    micro_config["train"]["logits"] = mode
    from coin.engine.run import run

    run(from_dict(micro_config), tmp_path / "run", progress=False, log=lambda *a, **k: None)
    assert seen
    for rows, labelled, total in seen:
        assert rows == (labelled if mode == "labelled" else total), (rows, labelled, total)
        assert labelled < total // 4
