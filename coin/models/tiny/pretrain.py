"""Caption pretraining of the built-in tiny MLLM, cached by the hash of its recipe.

CoIN starts from the pretrain-only LLaVA-1.5: an aligned projector on a chat LM that
knows what is in an image but none of the eight answer formats. The tiny analogue is
trained from scratch on CoIN-Synth captions that mention every fact the tasks ask about
(shapes, colours, sizes, positions, counts, words, book covers, unreadable photos), so
the tasks mostly teach formats and the zero-shot row is near zero, as in the paper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import torch

from coin.config import ModelConfig
from coin.benchmarks.synth.generator import CAPTION_PROMPT, GENERATOR_VERSION, generate
from coin.io import cache_dir, publish_dir
from coin.machine import cpu_identity
from coin.models.empty import from_pretrained
from coin.models.tiny.fit import fit
from coin.models.tiny.model import TinyConfig, build_model, build_processor, train_tokenizer
from coin.data.coin_json import load_train
from coin.models.llava.wrapper import LlavaVLM
from coin.models.sequences import resolve_max_length

BASE_VERSION = 1


def base_key(cfg: ModelConfig) -> str:
    """Hash of everything that determines the pretrained base."""
    tiny = TinyConfig(**cfg.options.tiny)
    blob = json.dumps([BASE_VERSION, GENERATOR_VERSION, tiny.to_dict(), dataclasses.asdict(cfg.options.pretrain)],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_or_pretrain(cfg: ModelConfig, log=print, progress: bool = True,
                     shipped_ok: bool = True) -> tuple[LlavaVLM, Path]:
    """The pretrained tiny base: the cache's, else the one shipped with coin for this recipe
    (``coin.models.tiny.ship``; not with ``shipped_ok=False``), else pretrained now into the cache."""
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    from coin.models.tiny.base_files import record, shipped_base

    key = base_key(cfg)
    path = cache_dir() / "base" / f"tiny-{key}"
    if not (path / "COMPLETE").is_file() and shipped_ok and (shipped := shipped_base(key)) is not None:
        rec = record()
        log(f"using the tiny base shipped with coin ({shipped}; pretrained at {rec.get('threads')} torch threads "
            f"on {_cpu_text(rec.get('cpu') or {})}); coin model prepare pretrains your own")
        path = shipped
    elif not (path / "COMPLETE").is_file():
        log(f"pretraining the tiny base model (cached afterwards in {path})")
        pretrain(cfg, path, log, progress)
    else:
        done = json.loads((path / "COMPLETE").read_text() or "{}")
        threads, cpu = done.get("threads"), done.get("cpu")
        log(f"using the cached tiny base {path}" + (f" (pretrained at {threads} torch threads)" if threads else ""))
        here = cpu_identity()
        if cpu and any(cpu.get(k) != here.get(k) for k in ("name", "family", "model", "capability")):
            log(f"note: the cached base was pretrained on another CPU kind ({_cpu_text(cpu)}; this one: "
                f"{_cpu_text(here)}); a base pretrained here may differ in its bits, and so may the matrix")
    model = from_pretrained(LlavaForConditionalGeneration, path)
    processor = LlavaProcessor.from_pretrained(path)
    vlm = LlavaVLM(model, processor, max_length=resolve_max_length(cfg.max_length, processor.tokenizer),
                   image_cache_mb=cfg.options.image_cache_mb)  # the "plain" conversation it was pretrained with
    return vlm, path


def _cpu_text(cpu: dict) -> str:
    return f"{cpu.get('name')} family {cpu.get('family')} model {cpu.get('model')}, {cpu.get('capability')}"


def _corpus(data_root: Path, caps: list[dict]) -> list[str]:
    texts = [turn["value"].replace("<image>\n", "") for c in caps for turn in c["conversations"]]
    for f in sorted(data_root.glob("Instructions_Original/*/train.json")):
        for r in json.loads(f.read_text()):
            texts += [c["value"].replace("<image>\n", "") for c in r["conversations"]]
    return texts + ["USER: ASSISTANT:", CAPTION_PROMPT]


def pretrain(cfg: ModelConfig, out: Path, log=print, progress: bool = True) -> None:
    """Train the tokenizer, then the vision tower on labels, then the model on conversations.

    Writes ``out`` atomically: built in ``<out>.partial``, then renamed. A pretraining killed
    part-way resumes from there (the tokenizer, the finished vision tower, each stage's last
    checkpoint) and ends with the weights an uninterrupted one reaches; a second process asking
    for the same base waits for the first instead of training it again.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out.with_name(out.name + ".lock"), log):
        if (out / "COMPLETE").is_file():  # another process built it while this one waited
            log(f"the tiny base was pretrained by another process meanwhile: {out}")
            return
        work = out.with_name(out.name + ".partial")
        _pretrain(cfg, work, log, progress)
        publish_dir(work, out, "COMPLETE")


@contextlib.contextmanager
def _exclusive(lock: Path, log):
    import fcntl

    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is pretraining this base ({lock}); waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


TOWER_FILE = "vision-tower.safetensors"  # the pretrained tower, kept in the work folder until the base is done
RNG_KEY = "__torch_rng__"


def recipe_trace(cfg: ModelConfig, steps: int = 3) -> dict[str, list[float]]:
    """The losses of the first ``steps`` steps of both pretraining stages under ``cfg``'s recipe.

    The same code path as a full pretraining (data, tokenizer, initialisation, both stages' losses and
    schedules), stopped early in a temporary folder: the shipped base records this curve, and a test
    compares a fresh one with it, so a change to the recipe that the cache key does not see is caught.
    """
    import tempfile

    trace: dict[str, list[float]] = {"vision": [], "lm": []}
    with tempfile.TemporaryDirectory(prefix="coin-recipe-") as tmp:
        _pretrain(cfg, Path(tmp) / "work", lambda *a: None, False, trace=trace, stop=steps)
    return trace


def _pretrain(cfg: ModelConfig, work: Path, log, progress: bool, trace: dict | None = None,
              stop: int | None = None) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import LlavaProcessor

    p = cfg.options.pretrain
    tiny = TinyConfig(**cfg.options.tiny)
    resuming = (work / "processor").is_dir()  # written first: an earlier attempt got past the tokenizer
    if resuming:
        log(f"resuming the interrupted pretraining in {work}")
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "data", ignore_errors=True)  # regenerated: the same seed writes the same files
    data = generate(work / "data", seed=p.seed, n_train=40, n_test=0, n_pretrain=p.samples)  # the paper's eight tasks
    caps = json.loads((data / "pretrain" / "train.json").read_text())
    if resuming:
        processor = LlavaProcessor.from_pretrained(work / "processor")
        tokenizer = processor.tokenizer
    else:
        tokenizer = train_tokenizer(_corpus(data, caps), tiny.vocab_size)
        processor = build_processor(tokenizer, tiny)
        aside = work / f"processor.partial-{os.getpid()}"
        processor.save_pretrained(aside)
        os.replace(aside, work / "processor")
    model = build_model(tiny, tokenizer, seed=p.seed)
    vlm = LlavaVLM(model, processor)
    samples = load_train(data / "pretrain" / "train.json", data / "images", "pretrain")
    if p.vision_steps > 0:
        from coin.models.tiny.vision_pretrain import pretrain_vision

        tower = model.model.vision_tower
        if (work / TOWER_FILE).is_file():
            state = load_file(work / TOWER_FILE)
            torch.set_rng_state(state.pop(RNG_KEY))
            tower.load_state_dict(state)
            log("vision tower: pretrained before the interruption, loaded")
        else:
            t1 = time.time()
            vloss = pretrain_vision(vlm, samples, [c["labels"] for c in caps], p.vision_steps, p.vision_batch_size,
                                    p.vision_lr, p.seed, progress, checkpoint=None if stop else work / "vision.ckpt",
                                    log=None if progress else log, trace=None if trace is None else trace["vision"],
                                    stop=stop)
            log(f"vision tower pretrained in {time.time() - t1:.0f}s, final loss {vloss:.3f}")
            state = {k: v.detach().contiguous() for k, v in tower.state_dict().items()}
            save_file({**state, RNG_KEY: torch.get_rng_state()}, work / f"{TOWER_FILE}.partial")
            os.replace(work / f"{TOWER_FILE}.partial", work / TOWER_FILE)
            (work / "vision.ckpt").unlink(missing_ok=True)
        tower.requires_grad_(False)  # then frozen, as LLaVA keeps its CLIP tower
    params = [q for q in model.parameters() if q.requires_grad]
    model.train()
    t0 = time.time()
    final = fit(params, lambda idx: model(**vlm.train_batch([samples[i] for i in idx])).loss, len(samples),
                steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup=int(p.warmup_ratio * p.steps), seed=p.seed,
                desc="pretrain base", progress=progress, betas=(0.9, 0.98),
                checkpoint=None if stop else work / "lm.ckpt", log=None if progress else log,
                trace=None if trace is None else trace["lm"], stop=stop)
    if stop:  # recipe_trace: the first steps only, nothing kept
        return
    log(f"pretrained in {time.time() - t0:.0f}s, final loss {final:.3f}")
    model.requires_grad_(True)
    vlm.save_base(work)
    for leftover in ("data", "processor"):
        shutil.rmtree(work / leftover)
    for leftover in ("lm.ckpt", TOWER_FILE):
        (work / leftover).unlink(missing_ok=True)
    # its bits depend on the thread count and the CPU kind (coin.machine): both are recorded
    (work / "COMPLETE").write_text(json.dumps({"seconds": time.time() - t0, "loss": final,
                                              "threads": torch.get_num_threads(), "cpu": cpu_identity()}))
