"""A micro LLaVA and a handful of samples for adapter and method tests (built in-process, offline)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer
from coin.data.sample import Sample, TestItem
from coin.models.llava.wrapper import LlavaVLM

MICRO = TinyConfig(vocab_size=300, vision_width=32, vision_layers=1, vision_heads=2, lm_width=32, lm_layers=2,
                   lm_heads=2, lm_ffn=64)
COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
_TOKENIZER = None


def tokenizer():
    """One tokenizer per test process (training it is the slow part)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        texts = [f"USER: ASSISTANT: What colour is the square? It is {c}. Name the shape: circle square {c}"
                 for c in COLOURS]
        _TOKENIZER = train_tokenizer(texts, MICRO.vocab_size)
    return _TOKENIZER


def tiny_vlm(seed: int = 0) -> LlavaVLM:
    """A fresh randomly initialised micro LLaVA (same weights for the same seed)."""
    tok = tokenizer()
    return LlavaVLM(build_model(MICRO, tok, seed=seed), build_processor(tok, MICRO))


def tiny_samples(root: Path, task: str, n: int) -> list[Sample]:
    """``n`` one-colour images under ``root`` with a question and a short answer each."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        colour = COLOURS[k % len(COLOURS)]
        path = root / f"{task}-{k}.png"
        if not path.exists():
            Image.new("RGB", (MICRO.image_size, MICRO.image_size), colour).save(path)
        question = "What colour is the square?" if task.endswith("A") else "Name the shape."
        answer = colour if task.endswith("A") else ["circle", "square"][k % 2]
        out.append(Sample(f"{task}-{k}", task, str(path), question, answer))
    return out


def sharp_vlm_and_samples(root: Path, prompts: list[str], data_seed: int, model_seed: int):
    """A small random LLaVA with sharp attention, and one CoIN-Synth image per prompt.

    Its weights are redrawn far larger than the init's: at init scale the next token hardly
    depends on anything but the current one, so a wrong position, a row mix-up or a leak across
    padding would not change the answers these tests compare.
    """
    import json

    import torch

    from coin.benchmarks.synth.generator import generate

    data = generate(root, seed=data_seed, n_train=2, n_test=0, n_pretrain=max(40, len(prompts)))
    caps = json.loads((data / "pretrain" / "train.json").read_text())
    tok = train_tokenizer([c["conversations"][1]["value"] for c in caps] + ["USER: ASSISTANT: Describe"], 400)
    cfg = TinyConfig(vocab_size=400, vision_width=32, vision_layers=1, vision_heads=2, lm_width=64, lm_layers=2,
                     lm_heads=2, lm_ffn=128)
    model = build_model(cfg, tok, seed=model_seed)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.25)
    vlm = LlavaVLM(model, build_processor(tok, cfg))
    vlm.model.eval()
    samples = [Sample(f"s{k}", "t", str(data / "images" / caps[k]["image"]), p) for k, p in enumerate(prompts)]
    return vlm, samples


def records_of(samples: list[Sample]) -> list[TestItem]:
    """Test records (as ``coin.data.coin_json.load_test`` gives them) for ``samples``."""
    return [TestItem(question_id=s.id, task=s.task, image_path=s.image, text=s.prompt) for s in samples]


# --------------------------------------------------------------------------- what the per-task-LoRA method tests share


def bank_lora(r: int = 4):
    """A plain LoRA adapter config (alpha 2r, no dropout, the projector trained), as the bank methods need."""
    from coin.config import AdapterConfig

    return AdapterConfig(type="lora", r=r, alpha=2.0 * r, dropout=0.0, train_projector=True)


def stage_ctx(vlm, data: dict, stage: int, tasks: list[str], seed: int = 0):
    """The StageContext of ``tasks[stage]`` with the training data of the tasks seen so far."""
    from coin.methods import StageContext

    return StageContext(vlm=vlm, task=tasks[stage], stage=stage, tasks=tasks,
                        train_data={t: data[t] for t in tasks[: stage + 1]}, seed=seed)


def randomize_current(bank, seed: int, scale: float = 0.3) -> None:
    """Stands for a task's training: the bank's current LoRA given weights that visibly change the output."""
    import torch

    from coin.adapters.bank import CURRENT

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in bank.layers:
            for part in (m.lora_A[CURRENT].weight, m.lora_B[CURRENT].weight):
                part.copy_(torch.randn(part.shape, generator=gen) * scale)
