"""bench/bench_gpu.py runs on a CPU (``--small``) from the repository alone and prints every figure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_gpu.py"


def test_small_cpu_run_prints_every_measurement(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COIN_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, str(BENCH), "--small", "--device", "cpu", "--steps", "1", "--warmup", "0",
           "--gen-batch-sizes", "2", "--new-tokens", "2", "--gen-reps", "1", "--variants", "lora",
           "--data-samples", "4", "--data-workers", "1", "--agree-prompts", "4", "--share-batch", "4",
           "--json", str(tmp_path / "gpu.json")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for column in ("steps/s", "TFLOP/s", "MFU", "peak GiB", "ckpt s", "prefill ms", "decode ms/tok", "gen peak GiB"):
        assert column in out, column
    assert "n/a" in out  # a CPU has no MFU: no made-up peak
    assert "data loading" in out and "1 workers" in out
    # issue #30 point 10: the kernel chosen, bf16-style agreement through LlavaVLM.generate, share_prefix
    # side by side, Qwen2-VL-7B's estimate (labelled as one), and everything in one JSON file
    assert "attention kernel (model.config._attn_implementation): sdpa" in out
    agree = re.search(r"agree: (\d+)/(\d+) identical answers", out)
    assert agree and agree.groups() == ("4", "4"), out  # fp32 on a CPU: batching changes no answer
    assert re.search(r"share_prefix, batch 4 .*off [\d.]+ ms, on [\d.]+ ms .*4/4 answers identical", out), out
    assert re.search(r"Qwen2-VL-7B at batch 16 x \d+ tokens: estimate [\d.]+ GiB \(coin.engine.memory, not measured;",
                     out), out
    report = json.loads((tmp_path / "gpu.json").read_text())
    for key in ("device", "torch", "transformers", "dtype", "variants", "loader_samples_per_s"):
        assert key in report, key
    lora = report["variants"]["lora"]
    assert lora["attn_implementation"] == "sdpa"
    assert lora["agreement"] == {"identical": 4, "prompts": 4, "batch": 4}
    assert lora["share_prefix"]["identical"] == 4 and lora["share_prefix"]["shared_ms"] > 0
    assert lora["train"]["steps_per_s"] > 0 and lora["train"]["peak_gib"] is None  # no CUDA peak: null, not NaN
    assert set(lora["eval_samples_per_s"]) == {"2"} and "prefill_ms" in lora["prefill_decode"]["2"]
    assert 20 < lora["memory_estimate"]["qwen2_vl_7b_gib"] < 80


def test_model_flops_counts_the_frozen_lm_twice_and_the_vision_tower_once():
    sys.path.insert(0, str(BENCH.parent))
    import bench_gpu

    cfg = bench_gpu.llava_config(small=True)
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration._from_config(cfg)
    lm = bench_gpu._linear_weights(model, "language_model") + bench_gpu._linear_weights(model, "lm_head")
    t, v = cfg.text_config, cfg.vision_config
    seq, patches = 600, (336 // 14) ** 2 + 1
    flops = bench_gpu.model_flops(model, cfg, 1, seq, 576)
    lm_f = 2 * lm * seq + 4 * t.num_hidden_layers * t.hidden_size * seq**2
    assert flops > 2 * lm_f
    assert lm > t.vocab_size * t.hidden_size  # lm_head counted
    vis = flops - 2 * lm_f - 6 * bench_gpu._linear_weights(model, "multi_modal_projector") * 576
    assert vis == 2 * bench_gpu._linear_weights(model, "vision_tower") * patches \
        + 4 * v.num_hidden_layers * v.hidden_size * patches**2
