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


# three tasks, each with its own instruction line: what the routing methods' tests (DISCO, HiDe, ProgLoRA) share
THREE_TASKS = ["taskA", "taskB", "taskC"]
THREE_PROMPTS = {"taskA": "What colour is the square?", "taskB": "Name the shape.", "taskC": "Describe the circle colour."}
THREE_HELD_OUT = {"taskA": "What colour is the circle?", "taskB": "Name the square shape.", "taskC": "Describe the colour."}


def three_task_stream(root: Path, adapter=None, n: int = 6, prompts: dict | None = None):
    """A micro LLaVA (two decoder layers) with ``adapter`` attached (default: LoRA r=4, ``bank_lora``), and the
    three tasks of ``n`` samples each with their own prompt: ``(vlm, {task: samples})``."""
    import dataclasses

    from coin.adapters import attach_adapter

    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, adapter or bank_lora())
    prompts = prompts or THREE_PROMPTS
    data = {t: [dataclasses.replace(s, prompt=prompts[t]) for s in tiny_samples(root, t, n)] for t in prompts}
    return vlm, data


def learn_stages(method, vlm, data: dict, stages: int, tasks: list[str] = THREE_TASKS):
    """Stages 0..stages-1 through ``method``'s hooks, each task's 'training' drawing the bank's current LoRA at
    random (``randomize_current``); returns the ``AdapterBank``."""
    from coin.adapters.bank import AdapterBank

    bank = AdapterBank.of(vlm.model)
    for stage in range(stages):
        ctx = stage_ctx(vlm, data, stage, tasks)
        method.before_task(ctx)
        randomize_current(bank, seed=stage)
        method.after_task(ctx)
    return bank


def prompt_feature(vlm, prompt: str):
    """The prompt's mean input embedding, computed from the embedding table (what the instruction-routed
    methods key on), to check theirs by hand."""
    import torch

    ids = vlm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return vlm.model.get_base_model().get_input_embeddings().weight[ids].float().mean(0)
