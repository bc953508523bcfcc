"""ProgLoRA (Yu et al., Findings of ACL 2025, 2025.findings-acl.143): a progressive pool of LoRA blocks, dynamic form.

What the paper says (its abstract; the full text was not available to this implementation, so no
section is cited): ProgLoRA keeps a *progressive LoRA pool* and trains a new LoRA block for each
incremental task, earlier blocks frozen, to reduce interference; *task-aware allocation* lets
the current task use the knowledge the earlier blocks hold, and *task recall* realigns the model
with learned tasks; a *static* ProgLoRA serves the basic setting (task identity known at test
time) and a *dynamic* ProgLoRA the challenging one (it is not). coin gives no task id at test
time, so this is the dynamic form.

What the released code does (github.com/Yahan-Yu/proglora_codebase,
``llava/model/language_model/llava_llama.py`` and ``CoIN/peft/tuners/clitmoelora.py``): every
adapted layer sums all blocks ``sum_k w_k B_k A_k x``, with one weight vector ``w`` per input,
``softmax`` over the blocks of ``key_k . q / sqrt(d)``, where ``q`` is a trained projection of the
input's max-pooled token embeddings and ``key_k`` one trained key per task (the current task's
key trains with its block; earlier keys and blocks are frozen). Training and test use the same
rule.

coin's reading (ours), on the adapter bank (``coin.adapters.bank``, as O-LoRA and DISCO):

- **pool**: each task trains a fresh LoRA in the bank's current slot; after the task it is
  stored, frozen, as the task's block (``task01``, ``task02``...), as released;
- **keys**: a task's key is not trained but taken, as DISCO's task means are, from the inputs:
  the mean over ``samples`` of its training inputs of ``coin.adapters.routing.instruction_features``
  (the LM's mean input embedding of the prompt text); an input's query is its own feature; their
  similarity is the cosine. The embedding table never trains, so a key stays valid. Coin's
  engine trains the PEFT model's parameters only, so the released trained keys and query
  projection have no place to live here;
- **task-aware allocation** (while task ``t`` trains): the earlier blocks ``j < t`` are in every
  layer's forward, frozen, with the weights ``alpha_tj = exp((cos(key_t, key_j) - 1) / allocation_temperature)``:
  the ``softmax`` over blocks ``0..t`` of ``cos(key_t, key_j) / allocation_temperature`` divided by
  the current block's own share, so the current block keeps weight 1 (the bank runs it at 1) and
  the earlier ones keep their softmax proportion to it. The task key stands for the per-input
  query of the release (one weight vector per task, not per input);
- **task recall** (test time): each input recalls the learned tasks with
  ``r = softmax(cos(query, key_k) / temperature)`` over the stored tasks, and every adapted layer
  mixes the blocks with the per-row weights ``r @ M``, where ``M[t]`` is the combination task
  ``t`` trained under (``M[t, t] = 1``, ``M[t, j] = alpha_tj`` for ``j < t``, 0 for later blocks).
  An input recalled as task ``t`` with certainty meets exactly the blocks, with exactly the
  weights, that task ``t`` was trained with; an uncertain one gets the recall-weighted average
  of those trained combinations. The routing record counts each input's most recalled task.

Defaults (ours): ``temperature`` 0.05 (DISCO's released cosine temperature; the release's
``sqrt(d)`` scaling of dot products of trained keys does not carry over to cosines),
``allocation_temperature`` 0.05, ``samples`` 1000. Parameters added per task: one LoRA. Works with
every backbone (``tiny``, ``llava``, ``llava-pretrain``, ``qwen2-vl``, ``hf``) and under DDP; needs
``adapter.type: lora``; refused under ``dist.strategy: fsdp``. What still forgets: the projector,
when ``adapter.train_projector`` is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.bank import AdapterBank, bank_problems, begin_task, current_size, end_task
from coin.adapters.routing import MixedVLM, check_routable, cosine, instruction_features
from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.models.backbone import VLM


@dataclass
class ProgLoRAOptions:
    """``method_options`` of ProgLoRA (dynamic form)."""

    # task recall at test time: softmax(cosine(input, task key) / temperature) over the stored tasks (ours: 0.05)
    temperature: float = 0.05
    # task-aware allocation while a task trains: earlier block j's weight exp((cosine(key_t, key_j) - 1) / this)
    # (ours: 0.05)
    allocation_temperature: float = 0.05
    samples: int = 1000  # training inputs per task whose mean instruction feature is its key (ours)

    def check(self) -> list[str]:
        out = [] if self.temperature > 0 else [f"temperature must be > 0, got {self.temperature}"]
        if not self.allocation_temperature > 0:
            out.append(f"allocation_temperature must be > 0, got {self.allocation_temperature}")
        return out + ([] if self.samples >= 1 else [f"samples must be >= 1, got {self.samples}"])


@METHODS.register
class ProgLoRA(Method):
    """A new LoRA block per task, earlier blocks frozen and mixed in by key similarity; recalled per test input."""

    name = "proglora"
    Options = ProgLoRAOptions
    supports_fsdp = False
    fsdp_refusal = "its adapter bank reads stored adapters outside the sharded forward (not verified)"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.keys = torch.zeros(0)  # (tasks, hidden): each task's key, its mean instruction feature

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return bank_problems(cfg, cls.name)

    # ------------------------------------------------------------------ training
    def _key(self, ctx: StageContext) -> torch.Tensor:
        samples = ctx.train_data[ctx.task]
        picked = [samples[i] for i in sample_indices(len(samples), self.opts.samples, ctx.seed, "proglora", ctx.task)]
        return instruction_features(ctx.vlm, picked).mean(0, keepdim=True)

    def allocation(self, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(tasks, tasks) ``M``: row t is the weight of each block while task t trained (1 on the diagonal,
        ``exp((cos(key_t, key_j) - 1) / allocation_temperature)`` for earlier j, 0 for later ones)."""
        keys = self.keys if keys is None else keys
        n = keys.shape[0]
        if n == 0:
            return torch.zeros(0, 0)
        c = cosine(keys, keys)
        alpha = torch.exp((c - c.diagonal().unsqueeze(1)) / self.opts.allocation_temperature)
        return torch.tril(alpha, diagonal=-1) + torch.eye(n)

    def before_task(self, ctx: StageContext) -> None:
        """This task's key; a fresh block trains while the earlier blocks add, frozen, with the allocation weights."""
        if ctx.stage == 0:
            check_routable(ctx.vlm, vision=False)
        have = self.keys.shape[0] if self.keys.numel() else 0
        if have < ctx.stage:
            raise RuntimeError(f"proglora: stage {ctx.stage} but only {have} task keys (the method state of an "
                               "earlier stage is missing)")
        key = self._key(ctx)
        keys = torch.cat([self.keys.view(-1, key.shape[1])[: ctx.stage], key])
        bank = begin_task(ctx.vlm.model, ctx.stage, ctx.seed)
        if len(bank.names) != ctx.stage:
            raise RuntimeError(f"proglora: {len(bank.names)} stored blocks before stage {ctx.stage} (the adapter "
                               "does not belong to this run)")
        self.keys = keys
        bank.set_mix(self.allocation()[ctx.stage, : ctx.stage] if ctx.stage else 0.0)

    def after_task(self, ctx: StageContext) -> None:
        """Store the task's block (frozen); nothing is mixed until the test-time recall sets the weights."""
        end_task(ctx.vlm.model, ctx.stage).set_mix(0.0)

    # ------------------------------------------------------------------ test time
    def recall(self, vlm: VLM, samples: list) -> torch.Tensor:
        """(inputs, tasks): ``softmax(cosine(input feature, task key) / temperature)`` per input."""
        n = len(AdapterBank.of(vlm.model).names)
        if n != self.keys.shape[0]:
            raise RuntimeError(f"proglora: {n} stored blocks but {self.keys.shape[0]} task keys (the method state "
                               "does not belong to this adapter)")
        return torch.softmax(cosine(instruction_features(vlm, samples), self.keys) / self.opts.temperature, dim=-1)

    def weights(self, vlm: VLM, samples: list) -> torch.Tensor:
        """(inputs, blocks): each input's block weights, its recall weights times the allocation matrix."""
        return self.recall(vlm, samples) @ self.allocation()

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        experts = ctx.tasks if ctx is not None else None
        bank = AdapterBank.of(vlm.model)

        def mix(samples: list) -> torch.Tensor:
            r = self.recall(vlm, samples)
            bank.set_mix(r @ self.allocation())  # every adapted layer, one row of weights per input
            return r  # the record counts each input's most recalled task

        return MixedVLM(vlm, mix, experts)

    def params_added_per_task(self, vlm: VLM) -> int:
        return current_size(vlm.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys} if self.keys.numel() else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.keys = state.get("keys", torch.zeros(0)).float()
