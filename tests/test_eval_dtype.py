"""Evaluation runs the fp32 adapter in the base's dtype (#30, point 4; ``coin.engine.eval_dtype``).

On a bf16 base, every LoRA matmul of generation computes in bf16 (the adapter's weights stay fp32);
on an fp32 base nothing changes, so the fp32 equalities of the other tests stand.
"""

from __future__ import annotations

import torch

from coin.adapters import attach_adapter
from coin.config_load import section
from coin.engine.eval_dtype import base_dtype, in_base_dtype
from coin.engine.evaluate import generate_answers
from tinyvlm import records_of as _records, tiny_samples, tiny_vlm


def _lora_output_dtypes(vlm, records):
    seen: set[torch.dtype] = set()
    handles = [m.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))
               for n, m in vlm.model.named_modules() if n.endswith("lora_A.default")]
    assert handles
    try:
        answers = generate_answers(vlm, records, 4, 2, progress=False)
    finally:
        for h in handles:
            h.remove()
    return seen, answers


def test_a_bf16_base_evaluates_its_fp32_adapter_in_bf16(tmp_path):
    vlm = tiny_vlm()
    vlm.model.to(torch.bfloat16)
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    lora = [p for n, p in vlm.model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)  # trained in fp32, as coin keeps them
    assert base_dtype(vlm.model) == torch.bfloat16
    seen, answers = _lora_output_dtypes(vlm, _records(tiny_samples(tmp_path, "GQA", 3)))
    assert seen == {torch.bfloat16} and len(answers) == 3
    assert all(p.dtype == torch.float32 for p in lora)  # autocast changes the compute, not the weights


def test_an_fp32_base_is_left_alone(tmp_path):
    vlm = tiny_vlm()
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    assert base_dtype(vlm.model) is None
    with in_base_dtype(vlm.model) as dtype:
        assert dtype is None and not torch.is_autocast_enabled("cpu")
    seen, _ = _lora_output_dtypes(vlm, _records(tiny_samples(tmp_path, "GQA", 2)))
    assert seen == {torch.float32}
