"""MR-LoRA (MLLM-CL, Zhao et al., 2025): one LoRA expert per task, and a router LoRA that names the expert.

What the release does (bjzhb666/MLLM-CL, read in ``ETrain/Eval/LLaVA/CoIN/model_agents_select_lora.py``,
``model_agents_select_lora_ability.py``, ``model_router.py``): every domain/ability trains its own LoRA
expert alone; a separate *router* LoRA on the same MLLM is fine-tuned on a few samples per task to
answer, for an input (image and question) wrapped in a routing prompt that lists the experts
(``ROUTING_PROMPT``: "There are five expert models ... Respond only with the letter ... Here is the
user's question: ..." + "JUST answer with the model's letter"), which expert should answer it. At
test time the router generates greedily (``max_new_tokens`` 16, temperature 0), the letter found in
its output picks the expert, and an output naming no valid expert picks one at random
(``choose_ans``). The router is trained on 20 samples per task (``scripts/LLaVA/Train_dom_single/
0_train_router.sh``: ``task5Router_train20.json``, a LoRA of the experts' rank, 40 epochs, lr 5e-6 with 3%
warmup and a cosine schedule, batch 4, weight decay 0), starting from the experts merged into the model at
weight 0.2 each (``--previous_task_model_path ..._merged0.2``), its projector trained at 5e-6 too.

coin's form (the same machinery as DISCO's hard routing, ``coin.methods.disco``): each task trains a
fresh LoRA alone in the adapter bank's current slot; after the task it is stored (``end_task``) and the
router LoRA is trained anew, from a fresh seeded LoRA in the (then empty) current slot, on exactly
``router_samples`` training samples of every task seen so far (seeded, the same per task at every
stage), each turned into a routing sample: its image, the routing prompt listing the seen experts by
number and task name, its question, and as answer its expert's number. Only the router's LoRA trains
(AdamW, ``router_epochs`` epochs at peak ``router_lr`` with the release's warmup and cosine, batches of
``router_batch``, outside the engine's training loop: no autocast, no gradient exchange); the stored experts add nothing
while it trains and the projector is left as it is. Its weights are kept in the method state (not in
the bank, so the bank holds experts only), and the current slot is cleared again. At test time the
router LoRA is put in the current slot (every expert off), generates at most ``router_tokens`` tokens
per input, and the first number in its answer picks the expert; inputs with the same expert are then
answered together with that LoRA alone (``GroupedVLM``, which records the routing accuracy per task).

Ours, not the release's: experts numbered 1..N with the task name as description (the release letters
A-E with a hand-written description of each domain, and a longer prompt); the router retrained from
scratch after every task on the seen tasks' few samples (the scripts read train one on all five tasks'
samples, named ``Task5``; per-stage routers are our reading of the continual setting); the router trained
on the model without the experts merged in and with the projector left as it is; the fallback for an
answer naming no expert: an expert drawn from (seed, sample id), so a rerun routes the same (the release:
``random.randint``).

Parameters added per task: one LoRA (the router LoRA is one more, shared). Needs ``adapter.type: lora``;
refused under ``dist.strategy: fsdp``. Under DDP every process trains the same router on the same
samples without gradient exchange (not verified to stay bit-identical across processes).
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from coin.adapters.bank import (
    CURRENT,
    AdapterBank,
    bank_problems,
    begin_task,
    current_size,
    end_task,
)
from coin.adapters.routing import GroupedVLM
from coin.methods.base import METHODS, Method, StageContext, sample_indices

if TYPE_CHECKING:
    from coin.data.sample import Sample
    from coin.models.backbone import VLM


# the routing prompt, a short form of the release's ROUTING_PROMPT and PROMPT_AFTER_QUESTION
ROUTER_HEAD = "Router. Experts: {experts}. Question: "
ROUTER_TAIL = "\nAnswer with the expert's number only."
_NUMBER = re.compile(r"\d+")


@dataclass
class MRLoRAOptions:
    """``method_options`` of MR-LoRA."""

    router_samples: int = 20  # training samples per seen task the router is trained on (release: 20)
    router_epochs: int = 40  # passes over the router's samples after each task (release: 40)
    router_lr: float = 5e-6  # peak AdamW learning rate of the router LoRA, 3% warmup then cosine (release: 5e-6)
    router_batch: int = 4  # routing samples per router training step (release: 4 per device)
    router_tokens: int = 4  # tokens the router generates per test input (release: up to 16; a number needs few)

    def check(self) -> list[str]:
        out = []
        for key in ("router_samples", "router_epochs", "router_batch", "router_tokens"):
            if getattr(self, key) < 1:
                out.append(f"{key} must be >= 1, got {getattr(self, key)}")
        return out + ([] if self.router_lr > 0 else [f"router_lr must be > 0, got {self.router_lr}"])


def router_prompt(question: str, experts: list[str]) -> str:
    """The routing prompt for ``question`` with the experts listed by number (1-based)."""
    listing = "; ".join(f"{k + 1} {name}" for k, name in enumerate(experts))
    return ROUTER_HEAD.format(experts=listing) + question + ROUTER_TAIL


def routing_samples(samples: list[Sample], experts: list[str], expert: int | None = None) -> list[Sample]:
    """Each sample as a routing sample (its image, the routing prompt), answered with ``expert``'s number."""
    answer = None if expert is None else str(expert + 1)
    return [dataclasses.replace(s, prompt=router_prompt(s.prompt, experts), answer=answer, turns=()) for s in samples]


@METHODS.register
class MRLoRA(Method):
    """One LoRA expert per task, trained alone; a router LoRA trained on a few samples per task names the expert."""

    name = "mrlora"
    Options = MRLoRAOptions
    supports_fsdp = False
    fsdp_refusal = "its adapter bank reads stored adapters outside the sharded forward (not verified)"

    def __init__(self, options: dict | None = None) -> None:
        super().__init__(options)
        self.router: dict[str, torch.Tensor] = {}  # "<layer>.A" / "<layer>.B": the router LoRA's weights
        self.experts: list[str] = []  # the seen tasks, in bank order (the router's answers index it)
        self.trained_on: list[Sample] = []  # the routing samples of the last router training (for tests)
        self.seed = 0

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        return bank_problems(cfg, cls.name)

    def before_task(self, ctx: StageContext) -> None:
        """A fresh LoRA expert for this task, trained alone (the stored ones add nothing while it trains)."""
        begin_task(ctx.vlm.model, ctx.stage, ctx.seed).set_mix(0.0)

    def after_task(self, ctx: StageContext) -> None:
        """Store the task's expert, then train the router anew on ``router_samples`` per seen task."""
        end_task(ctx.vlm.model, ctx.stage).set_mix(0.0)
        self.seed = ctx.seed
        self.experts = list(ctx.tasks[: ctx.stage + 1])
        data = []
        for k, task in enumerate(self.experts):
            samples = ctx.train_data[task]
            picked = sample_indices(len(samples), self.opts.router_samples, ctx.seed, "mrlora", task)
            data += routing_samples([samples[i] for i in picked], self.experts, k)
        self.trained_on = data
        self.router = self._train_router(ctx.vlm, data, ctx.seed, ctx.stage)

    def _train_router(self, vlm: VLM, data: list[Sample], seed: int, stage: int) -> dict[str, torch.Tensor]:
        """The router LoRA trained on ``data`` in the current slot (which is left cleared)."""
        bank = AdapterBank.of(vlm.model)
        bank.reset_current(seed, "mrlora-router", stage)
        bank.set_mix(0.0)
        params = [p for _, m in bank.layers for p in (m.lora_A[CURRENT].weight, m.lora_B[CURRENT].weight)]
        trainable = {p: p.requires_grad for p in vlm.model.parameters()}
        for p in vlm.model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=self.opts.router_lr, weight_decay=0.0)
        steps = self.opts.router_epochs * math.ceil(len(data) / self.opts.router_batch)
        warmup = math.ceil(0.03 * steps)  # the release's warmup_ratio 0.03 and cosine schedule
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / warmup if k < warmup else
                                                  0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, steps - warmup))))
        device = params[0].device
        rng = random.Random(f"{seed}:mrlora-router-order:{stage}")
        was_training = vlm.model.training
        vlm.model.train()
        try:
            for _ in range(self.opts.router_epochs):
                order = list(range(len(data)))
                rng.shuffle(order)
                for k in range(0, len(order), self.opts.router_batch):
                    batch = vlm.train_batch([data[i] for i in order[k : k + self.opts.router_batch]])
                    batch = {key: v.to(device) if torch.is_tensor(v) else v for key, v in batch.items()}
                    loss = vlm.model(**batch).loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
        finally:
            vlm.model.train(was_training)
            for p, flag in trainable.items():
                p.requires_grad_(flag)
                p.grad = None
        weights = {}
        for name, a, b in bank.pairs(CURRENT):
            weights[f"{name}.A"] = a.detach().float().cpu().clone()
            weights[f"{name}.B"] = b.detach().float().cpu().clone()
        bank.clear_current()
        return weights

    # ------------------------------------------------------------------ test time
    def route(self, vlm: VLM, samples: list[Sample], fell_back=None) -> list[int]:
        """Each input's expert (index in the bank's order), as the router LoRA answers for it.

        ``fell_back(samples)`` is told the inputs whose answer named no expert (routed by the seeded
        fallback), so the stage's ``routing.json`` counts them (``RoutedVLM.fell_back``)."""
        bank = AdapterBank.of(vlm.model)
        n = len(bank.names)
        if n != len(self.experts) or not self.router:
            raise RuntimeError(f"mrlora: {n} stored LoRA experts but a router for {len(self.experts)} (the method "
                               "state does not belong to this adapter)")
        saved = [(a.detach().clone(), b.detach().clone()) for _, a, b in bank.pairs(CURRENT)]
        with torch.no_grad():
            for name, a, b in bank.pairs(CURRENT):
                a.copy_(self.router[f"{name}.A"])
                b.copy_(self.router[f"{name}.B"])
        bank.set_mix(0.0)
        try:
            answers = vlm.generate(routing_samples(samples, self.experts), self.opts.router_tokens)
        finally:
            with torch.no_grad():
                for (_, a, b), (a0, b0) in zip(bank.pairs(CURRENT), saved):
                    a.copy_(a0)
                    b.copy_(b0)
        named = [self._named(text, n) for text in answers]
        if fell_back is not None and any(k is None for k in named):
            fell_back([s for s, k in zip(samples, named) if k is None])
        return [k if k is not None else self._fallback(s, n) for k, s in zip(named, samples)]

    @staticmethod
    def _named(text: str, n: int) -> int | None:
        """The expert the router's answer names (its first number, 1-based, within 1..n); None when it names none."""
        found = _NUMBER.search(text)
        return int(found.group()) - 1 if found and 1 <= int(found.group()) <= n else None

    def _fallback(self, sample: Sample, n: int) -> int:
        """A seeded draw for an input whose router answer named no expert (the release draws at random)."""
        return random.Random(f"{self.seed}:mrlora-fallback:{sample.id}").randrange(n)

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        if ctx is not None:  # a resumed run's state holds how many experts, the run's config their names
            self.experts = list(ctx.tasks[: len(self.experts)])
        wrapper = GroupedVLM(vlm, lambda samples: self.route(vlm, samples, wrapper.fell_back),
                             ctx.tasks if ctx is not None else None)
        return wrapper

    def params_added_per_task(self, vlm: VLM) -> int:
        return current_size(vlm.model)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        if not self.router:
            return {}
        state = {f"router.{k}": v for k, v in self.router.items()}
        state["experts"] = torch.tensor(len(self.experts))
        state["seed"] = torch.tensor(self.seed)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.router = {k[len("router."):]: v.float() for k, v in state.items() if k.startswith("router.")}
        self.seed = int(state["seed"]) if "seed" in state else 0
        # the task names are the run's (``ctx.tasks``): ``eval_model`` names the experts again
        self.experts = [f"task{k + 1:02d}" for k in range(int(state["experts"]))] if "experts" in state else []
