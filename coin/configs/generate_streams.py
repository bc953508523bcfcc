"""Write configs/ucit/ and configs/mllm-cl/: LLaVA-1.5-7B on UCIT and MLLM-CL, one file per method.

    python configs/generate_streams.py            # (re)write the configs
    python configs/generate_streams.py --check    # exit 1 when a shipped config differs (tests run this)

The recipe is CoIN's (configs/coin/: LoRA r 128 / alpha 256 on every LM linear layer, lr 2e-4,
cosine with 3% warm-up, one epoch, bf16, effective batch 128); HiDe-LLaVA's and MLLM-CL's own
hyper-parameters could not be confirmed from their public code, so the methods are compared
under one recipe. Both benchmarks start from the instruction-tuned LLaVA-1.5-7B (llava-hf
layout), not CoIN's pretrain-only model. UCIT decodes 128 new tokens per answer (SPEC section 10).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# folder/stem prefix -> (benchmark, data root, what it holds, image root, what that is, new tokens per task)
STREAMS = {
    "ucit": ("ucit", "data/UCIT", "holds instructions/<Task>/{train,test_3000}.json (HaiyangGuo/UCIT)",
             "data/UCIT/datasets", "image paths are relative to UCIT's datasets/ folder",
             {"ImageNet-R": 128, "ArxivQA": 128, "VizWiz-Caption": 128, "IconQA": 128, "CLEVR-Math": 128,
              "Flickr30k": 128}),
    "mllm-cl/dcl": ("mllm-dcl", "data/MLLM-CL", "holds Domain_data/<D>/{images,train.json,test.json}",
                    None, "", {}),
    "mllm-cl/acl": ("mllm-acl", "data/MLLM-CL", "holds Ability_data/ (OCR/, OCR_test/, math_test/, CV-Benchv2/...)",
                    None, "", {}),
}

METHODS = {  # stem -> (comment, method, method_options, adapter overrides)
    "lora": ("Sequential LoRA (r 128): the baseline every method is compared with.", "sequential", {}, {}),
    "moelora-8": ("MoELoRA with 8 experts of rank 16.", "sequential", {}, {"type": "moelora", "experts": 8}),
    "ewc": ("EWC: Fisher from 1,000 samples per task, lambda 0.1 (CoIN's setting).", "ewc",
            {"samples": 1000, "lambda_": 0.1}, {}),
    "lwf": ("LwF: outputs of 100 samples per earlier task kept, lambda 0.1 (CoIN's setting).", "lwf",
            {"samples": 100, "lambda_": 0.1}, {}),
    "replay": ("Replay: 100 samples per earlier task mixed into later tasks.", "replay", {"samples": 100}, {}),
    "multitask": ("Multi-task: one training on every task's data (the upper reference; only its last row counts).",
                  "multitask", {}, {}),
    "zeroshot": ("Zero-shot: the starting model on every task, nothing trained.", "zeroshot", {}, {}),
    "olora": ("O-LoRA: a fresh LoRA per task, pushed orthogonal to the earlier ones (lambda_1 0.05, MCITlib's "
              "LLaVA recipe; O-LoRA's released T5/LLaMA code uses 0.5).", "olora", {"lambda_1": 0.05, "lambda_2": 0.0}, {}),
    "keeplora": ("KeepLoRA: A from the task's gradient outside the protected subspace, frozen; B trains; merged "
                 "after each task, then the subspace grows by the task's gradient at the merged model (r 64, alpha "
                 "2r as its released scripts).", "keeplora",
                 {"init_energy": 0.6, "task_energy": 0.99, "grow": "gradient"}, {"r": 64, "alpha": 128}),
    "reglora": ("SEFE's RegLoRA: merged after each task; the top 2% of |BA| positions kept off by a 2.5e3 "
                "penalty.", "reglora", {"lambda_": 2500.0, "top": 0.02}, {}),
    "hide": ("HiDe-LLaVA: one LoRA expert per task; below the last layer the experts' summed factors, in the last "
             "a mix by similarity (as released).", "hide", {"temperature": 0.1, "fusion": "factors"}, {}),
    "disco": ("DISCO-style task adapters: one LoRA per task, picked at test time by instruction similarity "
              "(mixing: soft mixes them all, as released).", "disco", {}, {}),
    "mrlora": ("MR-LoRA (MLLM-CL): one LoRA expert per task, trained alone; a router LoRA retrained after each task on 20 "
               "samples per seen task names each test input's expert (40 epochs at 5e-6, as released).", "mrlora",
               {"router_samples": 20, "router_epochs": 40, "router_lr": 5e-6}, {}),
    "proglora": ("ProgLoRA (dynamic): a new LoRA block per task, earlier blocks frozen and mixed in by task-key similarity "
                 "while it trains; each test input recalls the tasks by instruction similarity.", "proglora", {}, {}),
    "lwf-free": ("Exemplar-free LwF: the model as each task starts distils its answers on the new task's own batches; "
                 "nothing of earlier tasks kept.", "lwf", {"inputs": "current", "lambda_": 0.1}, {}),
    "asd": ("SEFE's answer-style diversification: 20% of each task's training samples rewritten into other answer "
            "styles (rule-based, coin's reading).", "asd", {"share": 0.2}, {}),
    "sefe": ("SEFE: answer-style diversification with RegLoRA (merged after each task, top 2% of |BA| penalised at "
             "2.5e3).", "sefe", {"share": 0.2, "lambda_": 2500.0, "top": 0.02}, {}),
}


# recipe -> per benchmark prefix: (adapter r, per-GPU batch, grad_accum, GPUs the batch assumes), and the shared keys.
# "coin": CoIN's recipe (above). "mcitlib": MCITlib's LLaVA-1.5-7B recipe (Ghy0501/MCITlib,
# configs/train_configs/LoRA-FT/LLaVA/<bench>/train/task*.json: rank 16 on UCIT and 32 on MLLM-DCL/ACL,
# lr 2e-4, batch 16 x 2 accumulation x 2 GPUs on UCIT and 4 x 2 x 2 on MLLM-CL; projector lr 2e-5 and
# alpha = 2r as its common recipe), so a GPU run compares line by line with its tables. One difference
# left: MCITlib's MLLM-DCL scripts train some tasks 3 epochs (task 2), coin one epoch for every task.
RECIPES = {
    "coin": {"ucit": (128, 16, 1, 8), "mllm-cl": (128, 16, 1, 8), "projector_lr": None},
    "mcitlib": {"ucit": (16, 16, 2, 2), "mllm-cl": (32, 4, 2, 2), "projector_lr": 2.0e-5},
}


def _yaml(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render(stream: str, stem: str, recipe: str = "coin") -> str:
    bench, root, root_doc, image_root, image_doc, tokens = STREAMS[stream]
    comment, method, options, adapter = METHODS[stem]
    rank, batch, accum, gpus = RECIPES[recipe][stream.split("/")[0]]
    name = f"llava-1.5-7b-{bench}-{stem}" + ("" if recipe == "coin" else f"-{recipe}")
    which = "CoIN's recipe" if recipe == "coin" else "MCITlib's LLaVA recipe (lr 2e-4, projector lr 2e-5, alpha = 2r)"
    lines = [f"# {comment}",
             f"# Benchmark: {bench} (coin ls benchmarks); LLaVA-1.5-7B with {which} (generate_streams.py).",
             "# Generated by configs/generate_streams.py: edit the script and rerun it, not this file.",
             "# Paths marked PLACEHOLDER are read against where you run `coin` when you run this config by its shipped name "
             "(coin run --config NAME),\n# against the copy's folder in a copy (coin cp NAME); point them at your data.",
             "# Check before a GPU job: coin run --config <this file> --dry-run",
             f"name: {name}", "seed: 0", f"method: {method}"]
    if options:
        lines.append("method_options:")
        lines += [f"  {k}: {_yaml(v)}" for k, v in options.items()]
    lines += ["data:", f"  benchmark: {bench}", f"  root: {root}  # PLACEHOLDER: {root_doc}"]
    if image_root:
        lines.append(f"  image_root: {image_root}  # PLACEHOLDER: {image_doc}")
    lines += ["tasks:", "  order: paper  # the benchmark's own order (coin ls benchmarks)", "  eval: seen",
              "model:", "  name: llava  # llava-hf LlavaForConditionalGeneration, vicuna_v1 conversation",
              "  path: checkpoints/llava-1.5-7b-hf  # PLACEHOLDER: a local copy of llava-hf/llava-1.5-7b-hf",
              "  dtype: bf16", "  gradient_checkpointing: true", "  attn_implementation: sdpa",
              "adapter:"]
    base = {"type": "lora", "r": rank, "alpha": 2 * rank, "dropout": 0.05, "train_projector": True}
    lines += [f"  {k}: {_yaml(v)}" for k, v in {**base, **adapter}.items()]  # a method's own rank replaces the recipe's
    lines += ["train:", "  lr: 2.0e-04"]
    if RECIPES[recipe]["projector_lr"] is not None:
        lines.append(f"  projector_lr: {RECIPES[recipe]['projector_lr']:.1e}  # the fully trained projector's lr")
    lines += [f"  batch_size: {batch}  # per GPU: {batch} x {accum} x {gpus} GPUs = {batch * accum * gpus}; "
              "raise grad_accum on fewer", f"  grad_accum: {accum}", "  epochs: 1", "  warmup_ratio: 0.03",
              "  weight_decay: 0.0", "  precision: bf16",
              "eval:", "  batch_size: 64", "  zero_shot: true", "  bootstrap: 1000"]
    if tokens:
        lines.append("  max_new_tokens:  # UCIT decodes 128 new tokens per answer")
        lines += [f"    {t}: {n}" for t, n in tokens.items()]
    return "\n".join(lines) + "\n"


def _path(stream: str, stem: str, recipe: str) -> Path:
    """ucit/<stem>.yaml, mllm-cl/dcl-<stem>.yaml; MCITlib's recipe in a mcitlib/ folder beside them."""
    folder, _, prefix = stream.partition("/")
    sub = HERE / folder / ("" if recipe == "coin" else recipe)
    return sub / (f"{prefix}-{stem}.yaml" if prefix else f"{stem}.yaml")


def files() -> dict[Path, str]:
    return {_path(stream, stem, recipe): render(stream, stem, recipe)
            for recipe in RECIPES for stream in STREAMS for stem in METHODS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a shipped config differs from this script")
    args = ap.parse_args(argv)
    stale = []
    for path, text in files().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale or missing: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
