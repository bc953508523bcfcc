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
    assert report["complete"] is True
    lora = report["variants"]["lora"]
    assert "errors" not in report and lora["train"]["logits"] == "labelled"
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
    # coin's labelled logits: the LM head (forward and input gradient) on the answer's 8 positions only
    head = bench_gpu._linear_weights(model, "lm_head")
    assert flops - bench_gpu.model_flops(model, cfg, 1, seq, 576, head_tokens=8) == 2 * 2 * head * (seq - 8)


SMALL = ["--small", "--device", "cpu", "--steps", "1", "--warmup", "0", "--gen-batch-sizes", "1", "2", "--new-tokens", "2",
         "--gen-reps", "1", "--variants", "lora", "--data-samples", "4", "--data-workers", "0", "--agree-prompts", "4",
         "--share-batch", "4"]


def test_a_failed_measurement_is_recorded_and_every_other_figure_kept(tmp_path, monkeypatch, capsys):
    """On a GPU's first contact an out-of-memory error at one batch size must not cost the other figures,
    and a check cut off by its time limit keeps what it had measured: the JSON is written after each one."""
    sys.path.insert(0, str(BENCH.parent))
    import bench_gpu
    import torch

    from coin.engine import lm_loss

    path = tmp_path / "gpu.json"
    real_generate, real_labelled = bench_gpu.bench_generate, lm_loss.labelled_loss
    on_disk, labelled = [], []

    def generate(vlm, batch_size, *a, **k):
        on_disk.append(json.loads(path.read_text()))  # what a kill at this moment would leave
        decoding = a[3] if len(a) > 3 else k.get("decoding", "coin")
        if batch_size == 2 and decoding == "coin":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_generate(vlm, batch_size, *a, **k)

    def counted(*a, **k):
        labelled.append(1)
        return real_labelled(*a, **k)

    monkeypatch.setattr(bench_gpu, "bench_generate", generate)
    monkeypatch.setattr(lm_loss, "labelled_loss", counted)
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", *SMALL, "--json", str(path)])
    assert bench_gpu.main() == 1  # a failure is the exit status too
    err = capsys.readouterr().err
    assert "1 measurement(s) failed" in err and "lora eval_samples_per_s batch 2: OutOfMemoryError" in err

    first = on_disk[0]  # the first generation: training is on disk already, the check not complete
    assert first["complete"] is False and first["variants"]["lora"]["train"]["steps_per_s"] > 0
    report = json.loads(path.read_text())
    assert report["complete"] is True
    assert list(report["errors"]) == ["lora eval_samples_per_s batch 2"]
    assert report["errors"]["lora eval_samples_per_s batch 2"].startswith("OutOfMemoryError: CUDA out of memory")
    lora = report["variants"]["lora"]
    assert lora["eval_samples_per_s"] == {"1": lora["eval_samples_per_s"]["1"], "2": None}
    assert lora["eval_samples_per_s"]["1"] > 0 and lora["eval_samples_per_s_hf"]["2"] > 0  # the rest measured
    assert lora["prefill_decode"]["2"]["prefill_ms"] > 0 and lora["agreement"]["identical"] == 4
    assert report["loader_samples_per_s"]["0"] > 0
    assert len(labelled) == 1  # the one training step went through coin's forward (labelled logits)


def test_bench_gpu_refuses_an_environment_below_coin_s_requirements(monkeypatch, capsys):
    sys.path.insert(0, str(BENCH.parent))
    import bench_gpu

    from coin import requirements

    real = requirements.installed_version
    monkeypatch.setattr(requirements, "installed_version",
                        lambda name: "5.17.0" if name == "transformers" else real(name))
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", *SMALL])
    assert bench_gpu.main() == 2
    assert "transformers 5.17.0 is installed; coin needs transformers<6,>=5.21" in capsys.readouterr().err


def test_the_prepared_gpu_check_script_runs_from_the_checkout(tmp_path):
    """bench/gpu_check.sh, the one command a lent GPU runs: versions, then bench_gpu.py's JSON (here --small on
    a CPU, no wheels to install: GPU_CHECK_WHEELS is an empty folder)."""
    repo = BENCH.parents[1]
    (tmp_path / "wheels").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COIN_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable,
           "GPU_CHECK_WHEELS": str(tmp_path / "wheels")}
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(repo / "bench" / "gpu_check.sh"), str(out), *SMALL], cwd=repo,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    versions = (out / "versions.txt").read_text()
    assert re.search(r"python [\d.]+ \| torch \S+ cuda \S+ \| transformers [\d.]+ \| peft [\d.]+", versions), versions
    report = json.loads((out / "gpu.json").read_text())
    assert report["complete"] is True and report["variants"]["lora"]["train"]["steps_per_s"] > 0
    assert "wrote" in (out / "bench_gpu.log").read_text()
