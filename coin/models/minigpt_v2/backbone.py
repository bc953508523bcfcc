"""MiniGPT-v2 (CoIN's third MLLM) from its released files: EVA ViT-g, the MiniGPT-v2 checkpoint, Llama-2-chat.

The model is assembled by ``coin.models.minigpt_v2.parts`` and wrapped by
``coin.models.minigpt_v2.wrapper``; this file holds its keys and the prompt formats they choose.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from coin.models.backbone import BACKBONES, Backbone, WeightPath, image_cache_problems

# key -> (what it names, "folder" or "file")
_PARTS = {"lm_path": ("a local Llama-2-7B-chat folder", "folder"),
          "vit_path": ("EVA-CLIP's eva_vit_g.pth", "file"),
          "checkpoint_path": ("the MiniGPT-v2 checkpoint, e.g. checkpoint_stage2.pth", "file")}


@dataclass(frozen=True)
class PromptFormat:
    """How MiniGPT-v2's prompt is written: a task identifier or not, and which box notation."""

    identifiers: bool  # "[vqa] " / "[refer] " before the question
    native_boxes: bool  # {<x1><y1><x2><y2>} on a 0-100 grid instead of CoIN's [x1, y1, x2, y2]
    doc: str


PROMPTS = {
    "coin": PromptFormat(False, False, "as CoIN ran it: no task identifier, CoIN's box strings"),
    "native": PromptFormat(True, True, "MiniGPT-v2's own: [vqa]/[refer] identifiers, {<x1><y1><x2><y2>} boxes "
                                       "on a 0-100 grid"),
}


@dataclass
class MiniGPTv2Options:
    lm_path: str | None = None  # a local Llama-2-7B-chat folder (LlamaForCausalLM and its tokenizer)
    vit_path: str | None = None  # EVA-CLIP ViT-g's eva_vit_g.pth (read weights-only; .safetensors also accepted)
    checkpoint_path: str | None = None  # the MiniGPT-v2 checkpoint: llama_proj and the released LoRA (its "model")
    prompt: str = "coin"  # coin (as CoIN ran it) | native (MiniGPT-v2's task identifiers and 0-100 boxes)
    released_lora_alpha: float = 16.0  # the scale the checkpoint's LoRA (r 64) is merged at: 16 as released
    image_size: int = 448  # images resized to this square (no padding), the ViT's pos_embed resized to match
    vit_depth: int = 39  # ViT blocks used (eva_vit_g.pth has 40; MiniGPT-v2 drops the last)
    vit_heads: int = 16  # attention heads of the ViT (ViT-g: 16 of 88)
    image_cache_mb: int = 2048  # preprocessed images kept, in MiB, by one machine's processes together; 0: none

    def check(self) -> list[str]:
        problems = [f"{k} is required for model.name 'minigpt-v2' ({text})" for k, (text, _) in _PARTS.items()
                    if not getattr(self, k)]
        if self.prompt not in PROMPTS:
            problems.append(f"prompt must be one of {', '.join(PROMPTS)}, got {self.prompt!r}")
        for key in ("image_size", "vit_depth", "vit_heads"):
            if getattr(self, key) < 1:
                problems.append(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.released_lora_alpha < 0:
            problems.append(f"released_lora_alpha must be >= 0, got {self.released_lora_alpha}")
        return problems + image_cache_problems(self.image_cache_mb)


_FETCH = {  # the dry run prints these for a missing piece
    "lm_path": ("huggingface-cli download meta-llama/Llama-2-7b-chat-hf --local-dir {path}"
                "  # gated: accept Meta's licence on the Hub first",),
    "vit_path": ("wget -c https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2/"
                 "eva_vit_g.pth -O {path}",),
    "checkpoint_path": ("# MiniGPT-v2's stage-2 checkpoint: the 'MiniGPT-v2 (after stage-2)' link of Vision-CAIR/"
                        "MiniGPT-4's README (Google Drive); save it as {path}",),
}


@BACKBONES.register
class MiniGPTv2(Backbone):
    """MiniGPT-v2 from its released files (Llama-2-7B-chat, eva_vit_g.pth, its checkpoint); CoIN's prompt by default.

    model.lm_path: the Llama-2-7B-chat folder; model.vit_path: eva_vit_g.pth; model.checkpoint_path:
    the MiniGPT-v2 checkpoint (llama_proj and the LoRA); model.prompt: coin or native.
    """

    name = "minigpt-v2"

    deviations = (
        "CoIN's evaluation built the model without lora_alpha, so PEFT's default 16 scaled the trained LoRA 16x "
        "smaller than in training (alpha 256); here evaluation uses the training alpha",)
    # CoIN scored MiniGPT-v2's Grounding with its own script (ETrain/Eval/MiniGPT/eval_grounding.py):
    # against origin_answer_bbox, the box on the unpadded image MiniGPT-v2 sees
    protocols = MappingProxyType({"Grounding": "minigpt"})

    Options = MiniGPTv2Options

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.backbone import torch_dtype
        from coin.models.minigpt_v2.parts import assemble_minigpt_v2
        from coin.models.minigpt_v2.wrapper import MiniGPTv2VLM

        o = cfg.options
        model, tokenizer = assemble_minigpt_v2(
            o.lm_path, o.vit_path, o.checkpoint_path, torch_dtype(cfg.dtype), vit_depth=o.vit_depth,
            vit_heads=o.vit_heads, image_size=o.image_size, released_lora_alpha=o.released_lora_alpha,
            attn_implementation=cfg.attn_implementation, log=log)
        fmt = PROMPTS[o.prompt]
        return MiniGPTv2VLM(model, tokenizer, identifiers=fmt.identifiers, native_boxes=fmt.native_boxes,
                            max_length=cfg.max_length, image_cache_mb=o.image_cache_mb)

    @classmethod
    def weights(cls, cfg) -> list[WeightPath]:
        """The three pieces, always local."""
        return [WeightPath(f"model.{k}", getattr(cfg.options, k), kind, fetch=_FETCH.get(k, ()))
                for k, (_, kind) in _PARTS.items() if getattr(cfg.options, k)]

    @classmethod
    def summary(cls, cfg) -> str:
        return f"{cfg.name} (prompt {cfg.options.prompt}, {cfg.options.checkpoint_path})"
