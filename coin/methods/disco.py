"""DISCO-style task adapters: one LoRA per task, chosen or mixed per test input by its instruction, no task id.

Each task trains its own fresh LoRA alone (the adapter bank's current slot,
``coin.adapters.bank``; the earlier tasks' LoRAs are stored, frozen, and left out of its
forward). After the task, its LoRA is stored and the task's mean instruction feature is kept:
the mean, over ``samples`` of its training inputs, of the LM's mean input embedding of the
prompt's tokens (``coin.adapters.routing.instruction_features``: the question and the task's
instruction line, without chat template or image). At test time, ``mixing`` decides:

- ``hard`` (coin's reading, the default): each input goes to the one stored LoRA whose task mean
  is the most cosine-similar to its own feature; inputs routed to the same LoRA are answered
  together with that LoRA alone (coin's batched decoding is kept);
- ``soft`` (as released in MCITlib's DISCO): each input mixes ALL stored LoRAs, in every adapted
  layer, with weights ``softmax(cosine(feature, task mean) / temperature)`` (0.05 released); the
  batch keeps its rows through decoding (``routing.row_stable``), since each row has its own mix.

The released code takes CLIP text features of the instruction; coin takes the LM's own input
embeddings (above), which every backbone has (ours). Hard stays the default: it is what coin ran
before (earlier results keep their meaning), and the released temperature was set for CLIP's
cosines, not for these: on CoIN-Synth with the micro model, soft mixing at 0.05 gives an input's
own task a mean weight of 0.49 to 1.0 depending on the task (the rest spread over the other
LoRAs), so it is neither top-1 nor known to match the release's sharpness. Soft also runs every
LoRA in every layer and decodes with rows kept in place. Choose ``soft`` to run the release's rule.

This is the task-specific-adapter design that the field's DISCO (subspace selection by
instruction similarity) builds on, the near-upper bound methods are compared against: a test
input routed to the right task meets exactly the LoRA its task trained. What still forgets is
what all tasks share: the projector, when ``adapter.train_projector`` is on (set it off for
fully separate tasks). The embedding table it routes by never trains, so a task's mean stays valid.
Evaluation records each input's top route (its LoRA, or its largest weight), so a run reports the
routing accuracy per task (``stages/NN-<task>/routing.json``; ``coin.adapters.routing.RoutedVLM``).

Defaults: ``mixing: hard`` and ``samples`` (1000) are ours; ``temperature`` 0.05 as released.
Parameters added per task: one LoRA. Works with every backbone (``tiny``, ``llava``,
``llava-pretrain``, ``qwen2-vl``, ``hf``) and under DDP; needs ``adapter.type: lora``; refused
under ``dist.strategy: fsdp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.bank import AdapterBank, bank_problems, begin_task, current_size, end_task
from coin.adapters.routing import GroupedVLM, MixedVLM, check_routable, cosine, instruction_features
from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM


MIXINGS = ("hard", "soft")  # how test inputs use the stored LoRAs (DiscoOptions.mixing)


@dataclass
class DiscoOptions:
    """``method_options`` of the DISCO-style task adapters."""

    # "hard": each input answered by its most similar task's LoRA alone (ours); "soft": all LoRAs mixed
    # by softmax(cosine / temperature) in every layer, per input (as released in MCITlib's DISCO)
    mixing: str = "hard"
    temperature: float = 0.05  # softmax temperature of soft mixing (released: 0.05)
    samples: int = 1000  # training inputs per task whose mean instruction feature represents it (ours)

    def check(self) -> list[str]:
        out = [] if self.mixing in MIXINGS else [f"mixing must be one of {', '.join(MIXINGS)}, got {self.mixing!r}"]
        if not self.temperature > 0:
            out.append(f"temperature must be > 0, got {self.temperature}")
        return out + ([] if self.samples >= 1 else [f"samples must be >= 1, got {self.samples}"])


@METHODS.register
class Disco(Method):
    """One LoRA per task, picked (or mixed) per test input by instruction similarity to each task's mean."""

    name = "disco"
    Options = DiscoOptions
    supports_fsdp = False
    fsdp_refusal = "its adapter bank reads stored adapters outside the sharded forward (not verified)"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.means = torch.zeros(0)  # (tasks, hidden): each stored LoRA's task mean instruction feature

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return bank_problems(cfg, cls.name)

    def before_task(self, ctx: StageContext) -> None:
        """A fresh LoRA for this task, trained alone (the stored ones add nothing while it trains)."""
        if ctx.stage == 0:
            check_routable(ctx.vlm, vision=False)
        begin_task(ctx.vlm.model, ctx.stage, ctx.seed).set_mix(0.0)

    def after_task(self, ctx: StageContext) -> None:
        """Store the task's LoRA and its mean instruction feature."""
        samples = ctx.train_data[ctx.task]
        picked = [samples[i] for i in sample_indices(len(samples), self.opts.samples, ctx.seed, "disco", ctx.task)]
        mean = instruction_features(ctx.vlm, picked).mean(0, keepdim=True)
        end_task(ctx.vlm.model, ctx.stage).set_mix(0.0)
        self.means = torch.cat([self.means.view(-1, mean.shape[1]), mean])

    # ------------------------------------------------------------------ test time
    def similarity(self, vlm: VLM, samples: list) -> torch.Tensor:
        """(inputs, LoRAs): cosine of each input's instruction feature with each stored LoRA's task mean."""
        n = len(AdapterBank.of(vlm.model).names)
        if n != self.means.shape[0]:
            raise RuntimeError(f"disco: {n} stored LoRAs but {self.means.shape[0]} task means (the method state "
                               "does not belong to this adapter)")
        return cosine(instruction_features(vlm, samples), self.means)

    def route(self, vlm: VLM, samples: list) -> list[int]:
        """Each input's stored LoRA (index in the bank's order): the task mean most similar to its instruction."""
        return self.similarity(vlm, samples).argmax(dim=-1).tolist()

    def weights(self, vlm: VLM, samples: list) -> torch.Tensor:
        """(inputs, LoRAs): soft mixing's weights, ``softmax(cosine / temperature)`` per input."""
        return torch.softmax(self.similarity(vlm, samples) / self.opts.temperature, dim=-1)

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        experts = ctx.tasks if ctx is not None else None
        if self.opts.mixing == "hard":
            return GroupedVLM(vlm, lambda samples: self.route(vlm, samples), experts)
        bank = AdapterBank.of(vlm.model)

        def mix(samples: list) -> torch.Tensor:
            w = self.weights(vlm, samples)
            bank.set_mix(w)  # every adapted layer, one row of weights per input
            return w

        return MixedVLM(vlm, mix, experts)

    def params_added_per_task(self, vlm: VLM) -> int:
        return current_size(vlm.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"means": self.means} if self.means.numel() else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.means = state.get("means", torch.zeros(0)).float()
