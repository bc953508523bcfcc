"""O-LoRA (Wang et al., EMNLP Findings 2023, arXiv 2310.14152): a fresh LoRA per task, orthogonal to the old ones.

Each task trains a fresh LoRA ``(A_t, B_t)`` (the adapter bank's current slot,
``coin.adapters.bank``); the LoRAs of earlier tasks are frozen and, in training and at test
time alike, every layer adds all of them: ``h = W x + sum_s s B_s A_s x``. The training loss adds

    lambda_1 * sum_layers sum_{s<t} sum_ij |(A_t A_s^T)_ij|   (the L1 norm of the cross-Gram matrix)

which pushes the rows of the new ``A_t`` (the input directions it reads) to be orthogonal to
those of every old ``A_s``, so the new update leaves the inputs the old ones use alone; and
optionally ``lambda_2 * sum_W ||W||_2`` over the new LoRA's weight tensors (every A_t and B_t).

Both terms as O-LoRA's released code writes them: the orthogonality term is the plain L1 sum of
the cross-Gram entries (the old A's are concatenated, so every stored task counts), and the L2
term is the unsquared Frobenius norm of each of the new LoRA's tensors (``torch.norm(param, p=2)``),
summed over tensors.

Defaults: ``lambda_1 = 0.5`` and ``lambda_2 = 0`` (off) as in O-LoRA's released code (T5 and
LLaMA); MCITlib's LLaVA-1.5 recipe uses ``lambda_1 = 0.05``, which coin's LLaVA configs
(configs/coin, configs/ucit, configs/mllm-cl) and the CoIN-Synth config use.

Parameters added per task: one LoRA (rank ``adapter.r`` on every adapted layer). The stored
LoRAs are saved with each stage as PEFT adapters (``adapter/task01/``...); nothing else is kept.
Works with every backbone (``tiny``, ``llava``, ``llava-pretrain``, ``qwen2-vl``, ``hf``) and under
DDP (every process adds the same penalty of the same weights); needs ``adapter.type: lora``;
refused under ``dist.strategy: fsdp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.bank import CURRENT, AdapterBank, bank_problems, begin_task, current_size, end_task
from coin.methods.base import METHODS, Method, StageContext

if TYPE_CHECKING:
    from coin.models.backbone import VLM


@dataclass
class OLoRAOptions:
    """``method_options`` of O-LoRA."""

    lambda_1: float = 0.5  # weight of the cross-Gram L1 penalty (O-LoRA's released code: 0.5; MCITlib: 0.05)
    lambda_2: float = 0.0  # weight of the new LoRA's L2 norms, unsquared, summed over its tensors (O-LoRA: 0, off)

    def check(self) -> list[str]:
        return [f"{k} must be >= 0, got {getattr(self, k)}" for k in ("lambda_1", "lambda_2") if getattr(self, k) < 0]


def cross_gram(bank: AdapterBank) -> torch.Tensor:
    """``sum_layers sum_s |A_t A_s^T|_1``: the current LoRA's A against every stored one (0 with none stored)."""
    names = bank.names
    total = None
    for _, module in bank.layers:
        a = module.lora_A[CURRENT].weight
        if not names:
            break
        old = torch.cat([module.lora_A[n].weight for n in names]).to(a.device, a.dtype)
        term = (a.float() @ old.float().T).abs().sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def current_norm(bank: AdapterBank) -> torch.Tensor:
    """``sum_W ||W||_2``: the unsquared Frobenius norm of each of the current LoRA's A and B, summed over layers.

    As O-LoRA's released code: one ``torch.norm(param, p=2)`` per LoRA tensor, added up (not the
    squared norm of all of them together).
    """
    return sum(torch.linalg.vector_norm(m.lora_A[CURRENT].weight.float())
               + torch.linalg.vector_norm(m.lora_B[CURRENT].weight.float()) for _, m in bank.layers)


@METHODS.register
class OLoRA(Method):
    """O-LoRA: per-task LoRAs summed, each new one pushed orthogonal to the old ones."""

    name = "olora"
    Options = OLoRAOptions
    supports_fsdp = False
    fsdp_refusal = "its adapter bank reads stored adapters outside the sharded forward (not verified)"

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return bank_problems(cfg, cls.name)

    def before_task(self, ctx: StageContext) -> None:
        """A fresh LoRA for this task; every earlier one frozen and summed in."""
        bank = begin_task(ctx.vlm.model, ctx.stage, ctx.seed)
        bank.set_mix(1.0)

    def loss(self, ctx: StageContext, batch: dict, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        """The task loss plus ``lambda_1 * cross-Gram L1`` (from the second task) and ``lambda_2 * sum ||W_t||_2``."""
        bank = AdapterBank.of(ctx.vlm.model)
        extra, self._terms = None, {}
        if self.opts.lambda_1 > 0 and bank.names:
            orth = self.opts.lambda_1 * cross_gram(bank)
            self._terms["orthogonal"] = orth.item()  # as added to the loss
            extra = orth
        if self.opts.lambda_2 > 0:
            l2 = self.opts.lambda_2 * current_norm(bank)
            self._terms["l2"] = l2.item()
            extra = l2 if extra is None else extra + l2
        return loss if extra is None else loss + extra.to(loss.device, loss.dtype)

    def after_task(self, ctx: StageContext) -> None:
        """Store this task's LoRA (frozen) beside the earlier ones; all of them answer the tests."""
        end_task(ctx.vlm.model, ctx.stage).set_mix(1.0)

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        AdapterBank.of(vlm.model).set_mix(1.0)  # also after a resume, which rebuilt the bank from disk
        return vlm

    def params_added_per_task(self, vlm: VLM) -> int:
        return current_size(vlm.model)
