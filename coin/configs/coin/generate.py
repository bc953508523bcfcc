"""Write the shipped configs of the paper's experiments on the real CoIN data, one complete file per run.

    python configs/coin/generate.py           # (re)write every file next to this script
    python configs/coin/generate.py --check   # exit 1 and name the files that differ from what it writes

Each YAML file is complete (the config loader has no inheritance), so a reader sees the whole
experiment in one place; this script keeps the two dozen of them consistent: one recipe, one model
section per backbone, and per file only what that run changes. Edit the script, not the files.

Sources for the values: the paper (``seeds/`` of the project: tables 5-9 and 12 and their text),
LLaVA-1.5's LoRA script (per-device batch 16, 8 GPUs, lr 2e-4, 3% warm-up, 1 epoch, bf16,
gradient checkpointing, LoRA dropout 0.05) and CoIN's released training and evaluation scripts:
every one of them passes ``--deepspeed scripts/zero3_offload.json``, whose ``WarmupLR`` scheduler
replaces ``--lr_scheduler_type cosine`` (``train.schedule: warmup_lr``), and evaluates with the
original's generation limits (``eval.max_new_tokens``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- shared pieces

DATA = {
    "benchmark": "coin",
    "root": "data/CoIN",
    "image_root": "data/images",
    "instructions": "original",
    "volume": 1.0,
    "answers": {"TextVQA": "TextVQA_0.5.1_val.json"},
}
TASKS = {"order": "paper", "eval": "seen"}
PAPER_ORDER = ["ScienceQA", "TextVQA", "ImageNet", "GQA", "VizWiz", "Grounding", "VQAv2", "OCR-VQA"]
ADAPTER = {"type": "lora", "r": 128, "alpha": 256, "dropout": 0.05, "train_projector": True}
TRAIN = {
    "lr": 2.0e-4,
    "projector_lr": None,
    "batch_size": 16,
    "grad_accum": 1,
    "epochs": 1,
    "schedule": "warmup_lr",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "adam_betas": [0.9, 0.999],
    "adam_eps": 1.0e-8,
    "max_grad_norm": 1.0,
    "precision": "bf16",
}
EVAL = {"batch_size": 64, "zero_shot": True, "bootstrap": 1000}
# the original's generation limits (CoIN's LLaVA evaluation scripts, greedy): 128 new tokens for the
# short-answer VQA tasks, 1024 for the others
LLAVA_LIMITS = {"ScienceQA": 1024, "TextVQA": 128, "ImageNet": 1024, "GQA": 128, "VizWiz": 128, "Grounding": 1024,
                "VQAv2": 1024, "OCR-VQA": 128}
LLAVA_EVAL = {**EVAL, "max_new_tokens": LLAVA_LIMITS}
# CoIN's LLaVA scripts (scripts/LLaVA/Train/*.sh): per-device batch per task, grad_accum 8, 8 GPUs
SCRIPTS_BATCH = {"ScienceQA": 14, "TextVQA": 14, "ImageNet": 16, "GQA": 6, "VizWiz": 14, "Grounding": 6, "VQAv2": 8,
                 "OCR-VQA": 10}


def _llava_pretrain(size: str) -> dict:
    return {
        "name": "llava-pretrain",
        "lm_path": f"checkpoints/vicuna-{size}-v1.5",
        "vision_path": "checkpoints/clip-vit-large-patch14-336",
        "projector_path": f"checkpoints/llava-v1.5-{size}-pretrain/mm_projector.bin",
        "dtype": "bf16",
        "gradient_checkpointing": True,
        "attn_implementation": "sdpa",
    }


BACKBONES = {
    "llava-1.5-7b": {
        "title": "LLaVA-1.5-7B (Vicuna-7B v1.5 + CLIP ViT-L/14-336 + the stage-1 projector)",
        "model": _llava_pretrain("7b"),
        "eval": LLAVA_EVAL,
    },
    "llava-1.5-13b": {
        "title": "LLaVA-1.5-13B (Vicuna-13B v1.5 + CLIP ViT-L/14-336 + the stage-1 projector)",
        "model": _llava_pretrain("13b"),
        "eval": {**LLAVA_EVAL, "batch_size": 32},
    },
    "qwen2-vl-7b": {
        "title": "Qwen2-VL-7B-Instruct (beyond the paper: a modern backbone on the same benchmark)",
        "model": {
            "name": "qwen2-vl",
            "path": "Qwen/Qwen2-VL-7B-Instruct",
            "dtype": "bf16",
            "gradient_checkpointing": True,
            "attn_implementation": "sdpa",
        },
        "eval": EVAL,
    },
    # the paper's other two MLLMs, each with the recipe CoIN ran it with (SPEC section 10); keys a
    # backbone sets under "adapter", "train" and "comments" replace the LLaVA recipe's
    "minigpt-v2": {
        "title": "MiniGPT-v2 (EVA-CLIP ViT-g/14 at 448 + Llama-2-7B-chat, from its stage-2 checkpoint), as CoIN ran it",
        "model": {
            "name": "minigpt-v2",
            "lm_path": "checkpoints/Llama-2-7b-chat-hf",
            "vit_path": "checkpoints/eva_vit_g.pth",
            "checkpoint_path": "checkpoints/minigptv2/checkpoint_stage2.pth",
            "prompt": "coin",
            "dtype": "bf16",
            "gradient_checkpointing": True,
        },
        "adapter": {"r": 64, "alpha": 256, "dropout": 0.05, "train_projector": True},
        "train": {"lr": 1.0e-5, "weight_decay": 0.05},
        "eval": {**EVAL, "max_new_tokens": dict.fromkeys(PAPER_ORDER, 100)},
        "comments": {
            "model.name": "MiniGPT-v2 assembled from its three released files",
            "model.lm_path": "PLACEHOLDER: a local copy of meta-llama/Llama-2-7b-chat-hf",
            "model.vit_path": "PLACEHOLDER: EVA-CLIP ViT-g's eva_vit_g.pth (as MiniGPT-v2 downloads it)",
            "model.checkpoint_path": "PLACEHOLDER: MiniGPT-v2's stage-2 checkpoint, CoIN's starting point",
            "model.prompt": "coin: no task identifiers, CoIN's box strings (native: MiniGPT-v2's own)",
            "model.gradient_checkpointing": "saves memory; the numbers do not change",
            "adapter.r": "LoRA on the LM's q_proj and v_proj, as MiniGPT-v2",
            "adapter.alpha": "CoIN's training alpha, also at evaluation (its eval fell back to 16: a bug)",
            "adapter.dropout": "MiniGPT-v2's LoRA dropout",
            "adapter.train_projector": "llama_proj trained fully; the ViT and the LM frozen",
            "train.lr": "CoIN's MiniGPT-v2 script",
            "train.weight_decay": "CoIN's MiniGPT-v2 script",
            "train.batch_size": "per GPU: 16 x grad_accum 1 x 8 GPUs, CoIN's MiniGPT-v2 batch",
            "train.grad_accum": "keep 128 on fewer GPUs: 2 on 4 GPUs, 4 on 2, 8 on one",
            "train.projector_lr": "null: llama_proj at train.lr",
            "train.schedule": "DeepSpeed WarmupLR: CoIN's MiniGPT-v2 script passes the same zero3_offload.json "
                              "(its LAVIS yaml's linear_warmup_cosine_lr is not what the Trainer ran)",
            "train.max_grad_norm": "coin's default; whether CoIN's MiniGPT-v2 runner clipped was not confirmed",
            "eval.max_new_tokens": "CoIN's MiniGPT-v2 evaluation: greedy, 100 new tokens for every task",
        },
    },
    "qwen-vl-chat": {
        "title": "Qwen-VL-Chat (the 2023 model, its own code from a local folder), as CoIN trained it",
        "model": {
            "name": "qwen-vl-chat",
            "path": "checkpoints/Qwen-VL-Chat",
            "prompt": "chatml",
            "trust_remote_code": True,
            "dtype": "bf16",
            "gradient_checkpointing": True,
        },
        "adapter": {"r": 64, "alpha": 16, "dropout": 0.05, "train_projector": False},
        "train": {"lr": 1.0e-5, "batch_size": 5, "warmup_ratio": 0.01, "weight_decay": 0.1, "adam_betas": [0.9, 0.95]},
        "eval": {**EVAL, "max_new_tokens": dict.fromkeys(PAPER_ORDER, 30)},
        "comments": {
            "model.name": "Qwen-VL-Chat through its own remote code",
            "model.path": "PLACEHOLDER: a local copy of Qwen/Qwen-VL-Chat (with its .py files and qwen.tiktoken)",
            "model.prompt": "chatml for training and evaluation (coin-eval: CoIN's evaluation string for both)",
            "model.trust_remote_code": "required: the folder's modeling_qwen.py runs; only for a folder you trust",
            "model.gradient_checkpointing": "saves memory; the numbers do not change",
            "adapter.r": "LoRA on the LM's c_attn, attn.c_proj, w1, w2, as Qwen-VL's fine-tuning script",
            "adapter.alpha": "Qwen-VL's LoRA alpha",
            "adapter.dropout": "Qwen-VL's LoRA dropout",
            "adapter.train_projector": "nothing trained fully: the ViT and the resampler stay frozen",
            "train.lr": "CoIN's Qwen-VL script",
            "train.batch_size": "per GPU: 5 x grad_accum 1 x 8 GPUs, CoIN's Qwen-VL batch",
            "train.grad_accum": "keep 40 on fewer GPUs: 2 on 4 GPUs, 4 on 2, 8 on one",
            "train.projector_lr": "unused: nothing is trained fully",
            "train.warmup_ratio": "CoIN's Qwen-VL script (--warmup_ratio 0.01): ceil(1% of a stage's steps)",
            "train.weight_decay": "CoIN's Qwen-VL script (--weight_decay 0.1)",
            "train.adam_betas": "CoIN's Qwen-VL script (--adam_beta2 0.95; beta1 the Trainer's 0.9)",
            "eval.max_new_tokens": "CoIN's Qwen-VL evaluation: greedy, 30 new tokens for every task",
        },
    },
}

# per-key comments, by dotted key (a key may also have a per-backbone comment below)
COMMENTS = {
    "name": "the run folder is runs/<name> unless --out says otherwise",
    "method": "a registered method; `coin ls methods` lists them with their options",
    "data.root": "PLACEHOLDER: holds Instructions_Original/ (CoIN's JSON)",
    "data.image_root": "PLACEHOLDER: image paths are relative to it (COCO2014/, GQA/...)",
    "data.instructions": "original (Type1) | diverse (Type2) | 10type",
    "data.volume": "seeded fraction of every training set (the paper: 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)",
    "data.answers.TextVQA": "PLACEHOLDER: the official TextVQA_0.5.1_val.json under data.root; its ten answers "
                            "are joined by question id (the paper's TextVQA protocol)",
    "tasks.order": None,  # filled per order below
    "tasks.eval": "after each stage evaluate the tasks trained so far",
    "model.name": None,  # per backbone
    "model.lm_path": "PLACEHOLDER: a local copy of lmsys/vicuna-{size}-v1.5",
    "model.vision_path": "PLACEHOLDER: a local copy of openai/clip-vit-large-patch14-336",
    "model.projector_path": "PLACEHOLDER: from liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-{size}-v1.5",
    "model.path": "hub id or a local folder",
    "model.dtype": "weights in bf16 (the adapter is kept in fp32 by PEFT)",
    "model.gradient_checkpointing": "as LLaVA-1.5's and CoIN's scripts",
    "model.attn_implementation": "flash_attention_2 when flash-attn is installed",
    "adapter.type": "lora | moelora",
    "adapter.r": None,  # per adapter
    "adapter.alpha": "scale alpha / r = 2, as LLaVA-1.5's LoRA (r 128, alpha 256)",
    "adapter.dropout": "LLaVA's default, which CoIN's scripts inherit",
    "adapter.train_projector": "the projector is trained fully; vision tower and LM frozen",
    "train.lr": "the paper's, for the adapter",
    "train.projector_lr": "null: the projector at train.lr, as CoIN trained it (its trainer ignored "
                          "mm_projector_lr); 2.0e-05 is LLaVA-1.5's LoRA recipe",
    "train.batch_size": "per GPU: 16 x grad_accum 1 x 8 GPUs = 128, LLaVA-1.5's LoRA batch (see the README)",
    "train.grad_accum": "keep 128 on fewer GPUs: 2 on 4 GPUs, 4 on 2, 8 on one",
    "train.epochs": "one epoch per task",
    "train.schedule": "DeepSpeed WarmupLR, as CoIN's scripts ran (their zero3_offload.json's scheduler replaces "
                      "--lr_scheduler_type cosine): log warm-up from 0, then constant; cosine: the paper's text",
    "train.warmup_ratio": "warm-up over ceil(3% of a stage's steps), as the HF Trainer counts them",
    "train.weight_decay": "AdamW without weight decay",
    "train.adam_betas": "AdamW's betas: the HF Trainer's defaults, which the DeepSpeed config's 'auto' takes",
    "train.adam_eps": "AdamW's eps: the HF Trainer's default",
    "train.per_task": "each task's per-GPU batch in CoIN's LLaVA scripts (x grad_accum 8 x 8 GPUs)",
    "eval.max_new_tokens": "the original's LLaVA evaluation: 128 new tokens (TextVQA, GQA, VizWiz, OCR-VQA) or "
                           "1024 (the others); every row stops at its </s>",
    "train.max_grad_norm": "gradient clipping, as the HF Trainer behind LLaVA's scripts",
    "train.precision": "bf16 autocast",
    "eval.batch_size": "batched greedy decoding (answers equal batch-size-1 answers)",
    "eval.zero_shot": "evaluate the base model first (the zero-shot row)",
    "eval.bootstrap": "resamples for the 95% confidence intervals",
}
COLUMN = 34  # comments start here (or two spaces after a longer line)
ORDER_COMMENTS = {
    "paper": "the paper's (random) order: ScienceQA, TextVQA, ImageNet, GQA, VizWiz, Grounding, VQAv2, OCR-VQA",
    "alphabet": "the paper's second order: GQA, Grounding, ImageNet, OCR-VQA, ScienceQA, TextVQA, VizWiz, VQAv2",
}

# --------------------------------------------------------------------------- the runs

EWC = {"samples": 1000, "lambda_": 0.1}
LWF = {"samples": 100, "lambda_": 0.1}
KEEPLORA = {"init_energy": 0.6, "task_energy": 0.99, "grow": "gradient", "grad_samples": 64}
REGLORA = {"lambda_": 2500.0, "top": 0.02}
OLORA = {"lambda_1": 0.05, "lambda_2": 0.0}
HIDE = {"temperature": 0.1, "samples": 1000, "fusion": "factors"}
DISCO = {"samples": 1000}
MRLORA = {"router_samples": 20, "router_epochs": 40, "router_lr": 5e-6}
PROGLORA = {"samples": 1000}
# method_options comments of the methods beyond the paper (by method, then key)
OPTION_COMMENTS = {
    "keeplora": {"init_energy": "protect W's leading directions holding just under 60% of its energy (the release's)",
                 "task_energy": "after each task grow until the subspace holds 99% of the task's gradient at the "
                                "merged model (the release's)",
                 "grow": "gradient: the release's; update: coin's former reading (the merged update's directions)",
                 "grad_samples": "samples whose loss gradient sets A and grows the subspace (ours; the release: "
                                 "10-20% of the task's data)"},
    "reglora": {"lambda_": "weight of the penalty at earlier tasks' key entries (SEFE's 2.5e3)",
                "top": "share of |BA| entries recorded per layer after each task (SEFE's 2%)"},
    "olora": {"lambda_1": "weight of the cross-Gram L1 penalty (MCITlib's LLaVA recipe; O-LoRA's released code: 0.5)",
              "lambda_2": "unsquared L2 norms of the new LoRA's tensors (O-LoRA's default: off)"},
    "hide": {"temperature": "softmax temperature over the similarities to each task's anchors (HiDe-LLaVA's)",
             "samples": "training inputs per task whose mean features are its anchors (ours)"},
    "disco": {"samples": "training inputs per task whose mean instruction feature represents it (ours)"},
    "proglora": {"samples": "training inputs per task whose mean instruction feature is its key (ours)"},
    "mrlora": {"router_samples": "training samples per seen task the router is trained on (release: 20)",
               "router_epochs": "passes over the router's samples after each task (release: 40)",
               "router_lr": "peak AdamW lr of the router LoRA, 3% warmup then cosine (release: 5e-6)"},
}
NO_ZS = {"zero_shot": False}  # zeroshot runs: every stage already evaluates the base model


def _v(stem: str, what: str, method: str = "sequential", options: dict | None = None, data: dict | None = None,
       tasks: dict | None = None, adapter: dict | None = None, eval_: dict | None = None,
       train: dict | None = None) -> dict:
    return {"stem": stem, "what": what, "method": method, "options": options or {}, "data": data or {},
            "tasks": tasks or {}, "adapter": adapter or {}, "eval": eval_ or {}, "train": train or {}}


MOE = lambda n: {"type": "moelora", "experts": n}  # noqa: E731
SEVEN_B = [
    _v("lora", "Sequential LoRA (r 128), the paper's main row (tables 2, 5-8: LLaVA, random order, Original "
       "instructions, volume 1.0)"),
    _v("lora-scripts-batch", "Sequential LoRA at the per-task batches of CoIN's LLaVA scripts: 8 GPUs x per-device "
       "{ScienceQA 14, TextVQA 14, ImageNet 16, GQA 6, VizWiz 14, Grounding 6, VQAv2 8, OCR-VQA 10} x grad_accum 8 = "
       "896/896/1024/384/896/384/512/640 samples per step (lora.yaml keeps LLaVA-1.5's 128 for every task)",
       train={"grad_accum": 8, "per_task": {t: {"batch_size": b} for t, b in SCRIPTS_BATCH.items()}}),
    _v("lora-alphabet", "Sequential LoRA in the alphabetical order (table 5, task-order study)",
       tasks={"order": "alphabet"}),
    _v("lora-diverse", "Sequential LoRA with the Diverse (Type2) instructions (table 6, instruction study)",
       data={"instructions": "diverse"}),
    _v("lora-10type", "Sequential LoRA with the 10Type instructions (table 6, instruction study)",
       data={"instructions": "10type"}),
    *[_v(f"lora-vol{v}", f"Sequential LoRA on {v:.0%} of each training set (table 7, volume study)",
         data={"volume": v}) for v in (0.1, 0.2, 0.4, 0.6, 0.8)],
    _v("lora-r192-vol0.4", "Sequential LoRA of rank 192 at 40% volume (table 12, rank study; r 128 is lora-vol0.4)",
       data={"volume": 0.4}, adapter={"r": 192, "alpha": 384}),
    _v("lora-r256-vol0.4", "Sequential LoRA of rank 256 at 40% volume (table 12, rank study; r 128 is lora-vol0.4)",
       data={"volume": 0.4}, adapter={"r": 256, "alpha": 512}),
    *[_v(f"moelora-{n}", f"MoELoRA with {n} experts of rank {128 // n} (table 8, number of experts)", adapter=MOE(n))
      for n in (2, 4, 8)],
    _v("moelora-8-vol0.4", "MoELoRA with 8 experts at 40% volume (table 9, against EWC and LwF)",
       data={"volume": 0.4}, adapter=MOE(8)),
    _v("ewc-vol0.4", "EWC: Fisher from 1,000 samples per task, lambda 0.1, at 40% volume (table 9)",
       method="ewc", options=EWC, data={"volume": 0.4}),
    _v("lwf-vol0.4", "LwF: outputs of 100 samples per earlier task kept, lambda 0.1, at 40% volume (table 9)",
       method="lwf", options=LWF, data={"volume": 0.4}),
    _v("keeplora", "KeepLoRA (Luo et al., ICLR 2026): each task's A frozen from its gradient outside a protected "
       "subspace, only B trains, merged into W after the task, then the protected subspace grows by the task's loss "
       "gradient at the merged model; rank 64 and alpha 2r as the released scripts. Before and after each task the "
       "gradient of every adapted W is summed in fp32 on the GPU (26 GB for the 7B LM, plus 13 GB for one batch's "
       "bf16 gradients)", method="keeplora", options=KEEPLORA, adapter={"r": 64, "alpha": 128}),
    _v("reglora", "SEFE's RegLoRA (Chen et al., ICML 2025): the LoRA merged after each task, later tasks penalised "
       "at earlier tasks' top-2% entries of BA; CoIN's LoRA (r 128). The records take one byte per adapted "
       "weight on the GPU (6.5 GB for the 7B LM)", method="reglora", options=REGLORA),
    _v("sefe", "SEFE (Chen et al., ICML 2025): answer-style diversification (20% of each task's training samples "
       "rewritten into other answer styles by coin's rules) with RegLoRA as above", method="sefe",
       options={"share": 0.2, **REGLORA}),
    _v("asd", "SEFE's answer-style diversification alone, with sequential LoRA (r 128): 20% of each task's training "
       "samples rewritten into other answer styles by coin's rules", method="asd", options={"share": 0.2}),
    _v("lwf-free", "Exemplar-free LwF: the model as each task starts distils its answers on the new task's own "
       "batches (lambda 0.1), nothing of earlier tasks kept; a copy of the trainable weights on the GPU",
       method="lwf", options={"inputs": "current", "lambda_": 0.1}),
    # the adapter-bank methods keep one LoRA per task: with CoIN's LoRA (r 128) each stored one is 1.3 GB in fp32
    _v("olora", "O-LoRA (Wang et al., 2023): a fresh LoRA per task (CoIN's r 128), earlier ones frozen and summed "
       "in, the new A pushed orthogonal to the old ones. Every stored LoRA stays on the GPU (1.3 GB each in fp32) "
       "and in every later stage's adapter folder", method="olora", options=OLORA),
    _v("hide", "HiDe-LLaVA (Guo et al., ACL 2025): a LoRA expert per task (CoIN's r 128); the lower layers add all "
       "of them, the last layer mixes them by the input's similarity to each task's anchors. Every stored expert "
       "stays on the GPU (1.3 GB each in fp32); evaluation keeps batch rows in place (model.generate)",
       method="hide", options=HIDE),
    _v("disco", "DISCO-style task adapters: one LoRA per task (CoIN's r 128), trained alone; each test input is "
       "answered by the LoRA of the task its instruction is closest to (no task id). Every stored LoRA stays on "
       "the GPU (1.3 GB each in fp32)", method="disco", options=DISCO),
    _v("mrlora", "MR-LoRA (Zhao et al., MLLM-CL 2025): one LoRA expert per task (CoIN's r 128), trained alone; a "
       "router LoRA retrained after each task on 20 samples of every seen task answers each test input with its "
       "expert's number (no task id). Every stored expert stays on the GPU (1.3 GB each in fp32); the router adds "
       "one more", method="mrlora", options=MRLORA),
    _v("proglora", "ProgLoRA (Yu et al., ACL Findings 2025), dynamic: one LoRA block per task (CoIN's r 128), earlier "
       "blocks frozen and mixed in by task-key similarity while it trains; each test input recalls the tasks by "
       "instruction similarity (no task id). Every stored block stays on the GPU (1.3 GB each in fp32); evaluation "
       "keeps batch rows in place (model.generate)", method="proglora", options=PROGLORA),
    _v("multitask", "Multi-task: one training on all eight tasks' data (the upper reference; only its last row "
       "is this method's result)", method="multitask"),
    _v("zeroshot", "Zero-shot: the pretrain-only model, never trained (every run's zero-shot row gives the same "
       "numbers)", method="zeroshot", eval_=NO_ZS),
]
RUNS = {
    "llava-1.5-7b": SEVEN_B,
    "llava-1.5-13b": [
        _v("lora", "Sequential LoRA (r 128) on the 13B model (tables 10-11, model-size study)"),
        _v("moelora-8", "MoELoRA with 8 experts of rank 16 on the 13B model", adapter=MOE(8)),
        _v("multitask", "Multi-task on the 13B model (only its last row is this method's result)",
           method="multitask"),
        _v("zeroshot", "Zero-shot: the 13B pretrain-only model, never trained", method="zeroshot", eval_=NO_ZS),
    ],
    "minigpt-v2": [
        _v("lora", "Sequential LoRA (r 64, alpha 256, on q and v) on MiniGPT-v2 as CoIN ran it (table 2's MiniGPT-v2 "
           "row)"),
        _v("multitask", "Multi-task on MiniGPT-v2 (only its last row is this method's result)", method="multitask"),
        _v("zeroshot", "Zero-shot: MiniGPT-v2's stage-2 checkpoint, never trained", method="zeroshot", eval_=NO_ZS),
    ],
    "qwen-vl-chat": [
        _v("lora", "Sequential LoRA (r 64, alpha 16) on Qwen-VL-Chat, trained and evaluated in ChatML (table 2's "
           "Qwen-VL row)"),
        _v("multitask", "Multi-task on Qwen-VL-Chat (only its last row is this method's result)", method="multitask"),
        _v("zeroshot", "Zero-shot: Qwen-VL-Chat as released, never trained", method="zeroshot", eval_=NO_ZS),
    ],
    "qwen2-vl-7b": [
        _v("lora", "Sequential LoRA (r 128) on Qwen2-VL-7B-Instruct with the paper's recipe"),
        _v("moelora-8", "MoELoRA with 8 experts of rank 16 on Qwen2-VL-7B-Instruct", adapter=MOE(8)),
        _v("zeroshot", "Zero-shot: Qwen2-VL-7B-Instruct as released (an instruction-tuned model, so unlike "
           "LLaVA's pretrain-only start its zero-shot scores are far from 0)", method="zeroshot", eval_=NO_ZS),
    ],
}

# --------------------------------------------------------------------------- rendering


def build(backbone: str, run: dict) -> dict:
    """The full config of one run, as a plain nested dict in the order it is written."""
    b = BACKBONES[backbone]
    cfg = {
        "name": f"{backbone}-{run['stem']}",
        "seed": 0,
        "method": run["method"],
    }
    if run["options"]:
        cfg["method_options"] = dict(run["options"])
    cfg["data"] = {**DATA, **run["data"]}
    cfg["tasks"] = {**TASKS, **run["tasks"]}
    cfg["model"] = dict(b["model"])
    adapter = {**ADAPTER, **b.get("adapter", {}), **run["adapter"]}
    order = ["type", "r", "alpha", "experts", "dropout", "train_projector"]
    cfg["adapter"] = {k: adapter[k] for k in order if k in adapter}
    cfg["train"] = {**TRAIN, **b.get("train", {}), **run["train"]}
    cfg["eval"] = {**b["eval"], **run["eval"]}
    return cfg


def _scalar(value) -> str:
    if isinstance(value, float) and 0 < abs(value) < 1e-2:
        return f"{value:.1e}"  # 2.0e-04: a float for YAML 1.1 too (it needs the dot)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def _comment(key: str, cfg: dict, backbone: str) -> str | None:
    size = "13b" if "13b" in backbone else "7b"
    if key in BACKBONES[backbone].get("comments", {}):
        return BACKBONES[backbone]["comments"][key]
    if key == "tasks.order":
        return ORDER_COMMENTS.get(cfg["tasks"]["order"])
    if cfg["train"].get("per_task") and key in ("train.batch_size", "train.grad_accum"):
        return {"train.batch_size": "per GPU; each task sets its own below (16, ImageNet's, is the largest: "
                                    "the dry run's memory estimate reads it)",
                "train.grad_accum": "every task's, as the scripts: 8 on 8 GPUs; 16 on 4, 64 on one keep each "
                                    "task's batch"}[key]
    if key.startswith("train.per_task.") and key.endswith(".batch_size"):
        n = cfg["train"]["per_task"][key.split(".")[2]]["batch_size"]
        return f"8 GPUs x {n} x grad_accum 8 = {8 * n * cfg['train']['grad_accum']}"
    if key == "eval.zero_shot" and cfg["method"] == "zeroshot":
        return "no separate zero-shot stage: every stage already is the base model"
    if key == "model.name":
        return {"llava-pretrain": "CoIN's starting point assembled from its parts (pretrain-only LLaVA-1.5)",
                "qwen2-vl": "Qwen2-VL / Qwen2.5-VL through transformers"}.get(cfg["model"]["name"])
    if key == "adapter.r":
        a = cfg["adapter"]
        return f"{a['experts']} experts of rank {a['r'] // a['experts']}, a softmax gate per token" \
            if a["type"] == "moelora" else "LoRA on every linear layer of the LM (not lm_head)"
    if key == "adapter.experts":
        return "MoELoRA: N experts share the rank r"
    if key == "adapter.alpha" and cfg["method"] == "keeplora":
        return "alpha = 2r, as KeepLoRA's released scripts"
    if key.startswith("method_options.") and cfg["method"] in OPTION_COMMENTS:
        return OPTION_COMMENTS[cfg["method"]].get(key.split(".", 1)[1])
    if key.startswith("method_options."):
        samples = {"ewc": "K: samples per task for the Fisher (the paper's 1,000)",
                   "lwf": "M: samples per earlier task whose outputs are kept (the paper's 100)"}
        return {"samples": samples.get(cfg["method"]), "lambda_": "the paper's lambda"}.get(key.split(".", 1)[1])
    text = COMMENTS.get(key)
    return text.format(size=size) if text else None


def render(backbone: str, run: dict) -> str:
    """The YAML text of one run: a header, then every key with a comment where one helps."""
    cfg = build(backbone, run)
    b = BACKBONES[backbone]
    lines = [
        *textwrap.wrap(f"{run['what']}.", 100, initial_indent="# ", subsequent_indent="# "),
        f"# Backbone: {b['title']}.",
        "# Generated by configs/coin/generate.py: edit the script and rerun it, not this file.",
        "# Paths marked PLACEHOLDER are read against where you run `coin` when you run this config by its shipped name "
        "(coin run --config NAME),\n# against the copy's folder in a copy (coin cp NAME); point them at your data.",
        "# Check before a GPU job: coin run --config <this file> --dry-run",
    ]
    body: list[tuple[str, str | None]] = []

    def walk(node: dict, prefix: str, indent: int) -> None:
        for key, value in node.items():
            full = f"{prefix}{key}"
            if isinstance(value, dict):
                body.append(("  " * indent + f"{key}:", _comment(full, cfg, backbone)))
                walk(value, full + ".", indent + 1)
            else:
                body.append(("  " * indent + f"{key}: {_scalar(value)}", _comment(full, cfg, backbone)))

    walk(cfg, "", 0)
    lines += [text if not note else f"{text:<{COLUMN}}# {note}" if len(text) < COLUMN - 1 else f"{text}  # {note}"
              for text, note in body]
    return "\n".join(lines) + "\n"


def files() -> dict[Path, str]:
    """Every shipped config: path -> text."""
    return {HERE / backbone / f"{run['stem']}.yaml": render(backbone, run)
            for backbone, runs in RUNS.items() for run in runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = ap.parse_args(argv)
    wanted = files()
    if args.check:
        stale = [p for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        extra = [p for p in HERE.glob("*/*.yaml") if p not in wanted]
        for p in stale:
            print(f"differs from generate.py: {p.relative_to(HERE)}")
        for p in extra:
            print(f"not written by generate.py: {p.relative_to(HERE)}")
        return 1 if stale or extra else 0
    for p, text in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    print(f"wrote {len(wanted)} configs under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
