"""HiDe-LLaVA (Guo et al., ACL 2025, arXiv 2503.12941): per-task LoRA experts, fused below, mixed at the top.

The LoRA is split into per-task experts (one LoRA per task in the adapter bank,
``coin.adapters.bank``). As released:

- training trains only the current task's expert, in every layer: while task t trains, no
  stored (earlier) expert is in the forward of any layer;
- at test time every decoder layer but the last sums the learned experts' A matrices and,
  separately, their B matrices, and applies the product: ``scaling * (sum_k B_k)(sum_k A_k) x``,
  cross terms ``B_j A_k`` included (task-general fusion; ``fusion: factors``);
- the last layer mixes the experts' outputs per input with weights ``softmax(sim / 0.1)``, where
  ``sim_k`` is the input's similarity to task k's anchors (task-specific expansion).

``fusion: outputs`` keeps coin's former reading of the fusion: each expert's own output summed,
``sum_k scaling * B_k A_k x``, no cross terms (what a sum of separately merged LoRAs gives).

Features and anchors (ours where the release uses CLIP). The original compares CLIP image and
text features with per-task running-mean anchors. coin uses what every backbone has
(``coin.adapters.routing``): the pooled vision features (the mean of the image tokens' embeddings
at the LM's input, after the projector) and the LM's mean instruction embedding (the mean input
embedding of the prompt's tokens). A task's anchors are the means of both over ``samples`` of its
training inputs, taken after its training (the original keeps a running mean during training;
with the projector training, ours are taken with the projector the task ends with). ``sim_k`` is
the mean of the two cosine similarities (how the original combines its image and text
similarities is our reading, unconfirmed). A text-only input has no image features: its image
similarity is 0, so its text routes it, and a task's image anchor is the mean over its inputs
with an image. Later tasks that train the projector move the image features that earlier anchors
were taken with; ``adapter.train_projector: false`` keeps them fixed.

Evaluation records each input's largest last-layer weight as its top route, so a run reports the
routing accuracy per task (``stages/NN-<task>/routing.json``; ``coin.adapters.routing.RoutedVLM``).

Defaults: temperature 0.1 and ``fusion: factors`` as released; ``samples`` (1000) and
``batch_size`` are ours. Parameters added per task: one LoRA. Evaluation keeps batches whole
through decoding (``routing.row_stable``: ``model.generate`` with per-question prefill, no row
dropping), since each row has its own last-layer weights. Works with LLaVA-style and chat
backbones whose config names an image token (``tiny``, ``llava``, ``llava-pretrain``,
``qwen2-vl``, ``hf``; checked before the first task) and under DDP; needs ``adapter.type: lora``;
refused under ``dist.strategy: fsdp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.bank import AdapterBank, bank_problems, begin_task, current_size, end_task
from coin.adapters.routing import MixedVLM, check_routable, cosine, instruction_features, vision_features
from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM


FUSIONS = ("factors", "outputs")  # how the layers below the last combine the experts (HiDeOptions.fusion)


@dataclass
class HiDeOptions:
    """``method_options`` of HiDe-LLaVA."""

    temperature: float = 0.1  # softmax temperature over the similarities (HiDe-LLaVA: 0.1)
    # below the last layer: "factors" applies (sum B_k)(sum A_k) x, cross terms included (as released);
    # "outputs" sums each expert's own output, sum_k B_k A_k x (coin's former reading)
    fusion: str = "factors"
    samples: int = 1000  # training inputs per task whose mean features are its anchors (ours)
    batch_size: int = 16  # inputs per forward when taking image features (ours)

    def check(self) -> list[str]:
        out = [] if self.temperature > 0 else [f"temperature must be > 0, got {self.temperature}"]
        if self.fusion not in FUSIONS:
            out.append(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        return out + [f"{k} must be >= 1, got {getattr(self, k)}" for k in ("samples", "batch_size")
                      if getattr(self, k) < 1]


@METHODS.register
class HiDe(Method):
    """HiDe-LLaVA: experts' factors summed in the lower layers, outputs mixed by input similarity in the last."""

    name = "hide"
    Options = HiDeOptions
    supports_fsdp = False
    fsdp_refusal = "its adapter bank reads stored adapters outside the sharded forward (not verified)"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.text = torch.zeros(0)  # (tasks, hidden): each learned expert's instruction anchor
        self.vision = torch.zeros(0)  # (tasks, hidden): each learned expert's image anchor

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return bank_problems(cfg, cls.name)

    def before_task(self, ctx: StageContext) -> None:
        """A fresh expert for this task, trained alone: no stored expert is in any layer's forward."""
        if ctx.stage == 0:
            check_routable(ctx.vlm)
        begin_task(ctx.vlm.model, ctx.stage, ctx.seed).set_mix(0.0)

    def after_task(self, ctx: StageContext) -> None:
        """Store the expert and this task's anchors: the mean features of its training inputs."""
        samples = ctx.train_data[ctx.task]
        picked = [samples[i] for i in sample_indices(len(samples), self.opts.samples, ctx.seed, "hide", ctx.task)]
        text = instruction_features(ctx.vlm, picked).mean(0, keepdim=True)
        imaged = [s for s in picked if s.image is not None]  # a text-only input has no image features
        vision = (vision_features(ctx.vlm, imaged, self.opts.batch_size).mean(0, keepdim=True) if imaged
                  else torch.zeros_like(text))
        end_task(ctx.vlm.model, ctx.stage).set_mix(0.0)  # eval_model sets the test-time mix
        self.text = torch.cat([self.text.view(-1, text.shape[1]), text])
        self.vision = torch.cat([self.vision.view(-1, vision.shape[1]), vision])

    # ------------------------------------------------------------------ test time
    def weights(self, vlm: VLM, samples: list) -> torch.Tensor:
        """(inputs, experts): each input's last-layer weights, ``softmax(sim / temperature)``."""
        n = len(AdapterBank.of(vlm.model).names)
        if n != self.text.shape[0]:
            raise RuntimeError(f"hide: {n} stored experts but {self.text.shape[0]} anchors (the method state "
                               "does not belong to this adapter)")
        sim = (cosine(vision_features(vlm, samples, self.opts.batch_size), self.vision)
               + cosine(instruction_features(vlm, samples), self.text)) / 2
        return torch.softmax(sim / self.opts.temperature, dim=-1)

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        bank = AdapterBank.of(vlm.model)
        if bank.last_layer is None:
            raise RuntimeError("hide: no LoRA layer of the model names its decoder layer (.layers.N.)")

        def mix(samples: list) -> torch.Tensor:
            w = self.weights(vlm, samples)
            bank.set_mix(1.0, {bank.last_layer: w}, fuse=self.opts.fusion == "factors")
            return w

        return MixedVLM(vlm, mix, ctx.tasks if ctx is not None else None)

    def params_added_per_task(self, vlm: VLM) -> int:
        return current_size(vlm.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"anchor/text": self.text, "anchor/vision": self.vision} if self.text.numel() else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.text = state.get("anchor/text", torch.zeros(0)).float()
        self.vision = state.get("anchor/vision", torch.zeros(0)).float()
        if self.text.shape != self.vision.shape:
            raise ValueError(f"hide state: text anchors {tuple(self.text.shape)} and image anchors "
                             f"{tuple(self.vision.shape)} differ")
