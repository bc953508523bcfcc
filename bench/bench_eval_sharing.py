"""Evaluation throughput with and without the shared image prefix and the vision feature cache.

Usage: python bench/bench_eval_sharing.py [--per-image 1 4 32] [--questions 128] [--stages 3]
                                          [--batch-size 64] [--new-tokens 8] [--device cpu] [--full] [--threads N]

It looks like a real CoIN evaluation: a LLaVA-1.5-layout model (bench_gpu's ``llava_config``:
CLIP at 336 px, 576 image tokens, features of the second-to-last layer; ``--full``: LLaVA-1.5-7B's
widths and depths, else the shrunken ``--small`` layout) with random weights, LLaVA-1.5's
``vicuna_v1`` conversation, PNG test images on disk and questions of mixed length, answered by
``coin.engine.evaluate.generate_answers`` (sorted by length, and by image when sharing) through
``LlavaVLM.generate``. The test set of ``--questions`` questions has 1, 4 or 32 questions per
image (``--per-image``), and it is evaluated ``--stages`` times, as a run evaluates after every
stage, with the same model object (its feature cache carried from stage to stage).

Four settings are timed side by side in one process: neither, ``share_prefix`` only,
``cache_vision`` only, both. Each prints samples/s over all stages and whether its answers are
identical to the first setting's. Random weights rarely emit the end token, so every answer
runs ``--new-tokens`` tokens; the timings are those of the real shapes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORDS = ("what is the colour of the object on the left side of the table near window is there a person "
         "holding small large red blue car tree sign how many people are in this picture").split()
SETTINGS = (("neither", False, False), ("share_prefix", True, False), ("cache_vision", False, True),
            ("both", True, True))


def build(full: bool, device: torch.device, dtype: torch.dtype):
    """A random LLaVA-1.5-layout ``LlavaVLM`` with a small trained tokenizer and a 336-px CLIP processor."""
    from transformers import LlavaForConditionalGeneration

    from shared import llava_config
    from coin.models.tiny.model import TinyConfig, build_processor, train_tokenizer
    from coin.models.llava.wrapper import LlavaVLM

    tok = train_tokenizer([" ".join(WORDS), "A chat between a curious user and an artificial intelligence "
                           "assistant. USER: ASSISTANT: Answer the question using a single word or phrase."], 600)
    processor = build_processor(tok, TinyConfig(image_size=336, patch_size=14))
    config = llava_config(small=not full)
    config.image_token_index = config.image_token_id = tok.convert_tokens_to_ids("<image>")
    t = config.text_config
    t.bos_token_id, t.eos_token_id, t.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.requires_grad_(False)  # evaluation: the tower is frozen, as the adapter leaves it
    return LlavaVLM(model, processor, conversation="vicuna_v1")


def test_set(root: Path, n: int, per_image: int, seed: int) -> list[dict]:
    """``n`` test records, ``per_image`` questions on each PNG image (random noise, 336 px)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    records = []
    for k in range(n):
        img = root / f"p{per_image}-{k // per_image}.png"
        if not img.exists():
            px = torch.randint(0, 256, (336, 336, 3), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(px).save(img)
        length = int(torch.randint(4, 16, (1,), generator=gen))
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length,), generator=gen)]
        text = " ".join(words).capitalize() + "?\nAnswer the question using a single word or phrase."
        records.append({"question_id": f"q{k}", "task": "bench", "image_path": str(img), "text": text})
    return records


def evaluate(vlm, records: list[dict], stages: int, batch_size: int, new_tokens: int, share: bool, cache: bool,
             device: torch.device) -> tuple[float, list[dict[str, str]]]:
    """Seconds for ``stages`` evaluations of ``records`` and each stage's answers."""
    from coin.engine.evaluate import generate_answers

    vlm.share_prefix = share
    vlm.vision_cache = None
    if cache:
        vlm.enable_vision_cache()
    vlm._pixel_cache._items.clear()  # every setting decodes and preprocesses its images once
    vlm._pixel_cache.bytes = 0
    answers = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(stages):
        answers.append(generate_answers(vlm, records, new_tokens, batch_size, progress=False))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, answers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-image", type=int, nargs="*", default=[1, 4, 32])
    ap.add_argument("--questions", type=int, default=128, help="test questions (a multiple of each --per-image)")
    ap.add_argument("--stages", type=int, default=3, help="evaluations of the test set (a run does one per stage)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="LLaVA-1.5-7B's architecture (bf16; meant for a GPU)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's); 1 on a busy machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.full else torch.float32
    vlm = build(args.full, device, dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    layout = "LLaVA-1.5-7B architecture" if args.full else "LLaVA-1.5 layout, shrunken widths (bench_gpu --small)"
    print(f"{layout}, random weights, {dtype}, on {where}")
    print(f"{args.questions} questions x {args.stages} stages, batch {args.batch_size}, {args.new_tokens} new tokens,"
          f" 576 image tokens per question")
    print(f"{'q/image':>8} " + " ".join(f"{name:>14}" for name, _, _ in SETTINGS) + "   speed-up (both)  identical")
    worst = True
    with tempfile.TemporaryDirectory() as tmp:
        for per_image in args.per_image:
            records = test_set(Path(tmp), args.questions, per_image, seed=per_image)
            evaluate(vlm, records[: args.batch_size], 1, args.batch_size, args.new_tokens, False, False, device)  # warm-up
            rates, same, base = [], [], None
            for _, share, cache in SETTINGS:
                seconds, answers = evaluate(vlm, records, args.stages, args.batch_size, args.new_tokens, share,
                                            cache, device)
                rates.append(args.questions * args.stages / seconds)
                base = base if base is not None else answers
                same.append(answers == base)
            worst &= all(same)
            print(f"{per_image:>8} " + " ".join(f"{r:>10.1f} q/s" for r in rates)
                  + f"   {rates[-1] / rates[0]:>14.1f}x  {'yes' if all(same) else 'NO: ' + str(same)}")
    return 0 if worst else 1


if __name__ == "__main__":
    raise SystemExit(main())
