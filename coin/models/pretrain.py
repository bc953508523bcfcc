"""Caption pretraining of the built-in tiny MLLM, cached by the hash of its recipe.

CoIN starts from the pretrain-only LLaVA-1.5: an aligned projector on a chat LM that
knows what is in an image but none of the eight answer formats. The tiny analogue is
trained from scratch on CoIN-Synth captions that mention every fact the tasks ask about
(shapes, colours, sizes, positions, counts, words, book covers, unreadable photos), so
the tasks mostly teach formats and the zero-shot row is near zero, as in the paper.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from coin.config import ModelConfig
from coin.data.synth import CAPTION_PROMPT, GENERATOR_VERSION, generate
from coin.io import cache_dir, publish_dir
from coin.models.fit import fit
from coin.models.tiny import TinyConfig, build_model, build_processor, train_tokenizer
from coin.data.coin_json import load_train
from coin.models.vlm import LlavaVLM, resolve_max_length

BASE_VERSION = 1


def base_key(cfg: ModelConfig) -> str:
    """Hash of everything that determines the pretrained base."""
    tiny = TinyConfig(**cfg.options.tiny)
    blob = json.dumps([BASE_VERSION, GENERATOR_VERSION, tiny.to_dict(), dataclasses.asdict(cfg.options.pretrain)],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_or_pretrain(cfg: ModelConfig, log=print, progress: bool = True) -> tuple[LlavaVLM, Path]:
    """The cached pretrained tiny base, pretraining it first when the cache has none."""
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    path = cache_dir() / "base" / f"tiny-{base_key(cfg)}"
    if not (path / "COMPLETE").is_file():
        log(f"pretraining the tiny base model (cached afterwards in {path})")
        pretrain(cfg, path, log, progress)
    else:
        log(f"using the cached tiny base {path}")
    model = LlavaForConditionalGeneration.from_pretrained(path)
    processor = LlavaProcessor.from_pretrained(path)
    vlm = LlavaVLM(model, processor, max_length=resolve_max_length(cfg.max_length, processor.tokenizer),
                   image_cache_mb=cfg.options.image_cache_mb)  # the "plain" conversation it was pretrained with
    return vlm, path


def _corpus(data_root: Path, caps: list[dict]) -> list[str]:
    texts = [turn["value"].replace("<image>\n", "") for c in caps for turn in c["conversations"]]
    for f in sorted(data_root.glob("Instructions_Original/*/train.json")):
        for r in json.loads(f.read_text()):
            texts += [c["value"].replace("<image>\n", "") for c in r["conversations"]]
    return texts + ["USER: ASSISTANT:", CAPTION_PROMPT]


def pretrain(cfg: ModelConfig, out: Path, log=print, progress: bool = True) -> None:
    """Train the tokenizer, then the vision tower on labels, then the model on conversations.

    Writes ``out`` atomically (built aside, then renamed).
    """
    p = cfg.options.pretrain
    tiny = TinyConfig(**cfg.options.tiny)
    work = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    data = generate(work / "data", seed=p.seed, n_train=40, n_test=0, n_pretrain=p.samples)  # the paper's eight tasks
    caps = json.loads((data / "pretrain" / "train.json").read_text())
    tokenizer = train_tokenizer(_corpus(data, caps), tiny.vocab_size)
    processor = build_processor(tokenizer, tiny)
    model = build_model(tiny, tokenizer, seed=p.seed)
    vlm = LlavaVLM(model, processor)
    samples = load_train(data / "pretrain" / "train.json", data / "images", "pretrain")
    if p.vision_steps > 0:
        from coin.models.vision_pretrain import pretrain_vision

        t1 = time.time()
        vloss = pretrain_vision(vlm, samples, [c["labels"] for c in caps], p.vision_steps, p.vision_batch_size,
                                p.vision_lr, p.seed, progress)
        log(f"vision tower pretrained in {time.time() - t1:.0f}s, final loss {vloss:.3f}")
        model.model.vision_tower.requires_grad_(False)  # then frozen, as LLaVA keeps its CLIP tower
    params = [q for q in model.parameters() if q.requires_grad]
    model.train()
    t0 = time.time()
    final = fit(params, lambda idx: model(**vlm.train_batch([samples[i] for i in idx])).loss, len(samples),
                steps=p.steps, batch_size=p.batch_size, lr=p.lr, warmup=int(p.warmup_ratio * p.steps), seed=p.seed,
                desc="pretrain base", progress=progress, betas=(0.9, 0.98))
    log(f"pretrained in {time.time() - t0:.0f}s, final loss {final:.3f}")
    model.requires_grad_(True)
    vlm.save_base(work)
    shutil.rmtree(work / "data")
    (work / "COMPLETE").write_text(json.dumps({"seconds": time.time() - t0, "loss": final}))
    publish_dir(work, out, "COMPLETE")  # another process's identical base, if first, is kept
