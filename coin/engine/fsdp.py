"""Sharded training (``dist.strategy: fsdp``): the frozen base sharded with FSDP2, the adapter replicated.

What is sharded. torch's ``fully_shard`` (FSDP2) on a one-dimensional device mesh of all
processes (``init_device_mesh("cuda" | "cpu", (N,))``; NCCL on GPUs, gloo on CPUs): each
decoder block that holds adapter weights is one FSDP unit, and the root unit (the model
itself) takes the rest of the frozen weights: embeddings, LM head, norms, the vision tower
and the projector's frozen original. Each process keeps 1/N of the frozen base; a unit's
weights are all-gathered just before it runs and freed after (the root's stay gathered
between a forward and its backward, as FSDP2 does for its root).

What is replicated. The trainable weights (LoRA/MoELoRA A, B and gates, the projector's
trainable copy) are FSDP's ``ignored_params``: plain fp32 tensors, whole on every process,
their gradients averaged over processes once per optimiser step (``reduce_gradients``), as
DDP does. They are small next to the base (an r 128 adapter is 4% of LLaVA-1.5-13B), and
keeping them whole means every method, checkpoint and saved adapter sees exactly what it
sees under DDP: EWC's Fisher and penalty, LwF's teacher outputs, replay, MoELoRA's gate, the
in-stage checkpoints and the adapter files are the same code on the same full tensors.
What sharding costs them is the extra all-gathers of each block's weights (forward, and
again in backward).

What is sharded of the trainable state. AdamW's two moments, half of the 16 bytes a trainable
weight costs (fp32 weight, gradient, two moments), are kept by one process each
(``adamw``, ``dist.shard_optimizer``, on by default): each process steps only the weights it
owns and broadcasts them after the step (torch's ``ZeroRedundancyOptimizer``, ZeRO stage 1),
so a trainable weight costs ``8 + 8 / N`` bytes per process instead of 16 (7.9 GiB of state
for LLaVA-1.5-13B at r 128 becomes 4.4 GiB on 8 GPUs). The update of each weight is the same
arithmetic as without sharding, so the adapters are those of a run that keeps the moments whole
(tested). A checkpoint gathers the moments on the main process first (``optimizer_state_on_main``)
and holds them whole, so it resumes under any number of processes, with or without sharding.

Precision. The frozen base stays in ``model.dtype`` (bf16 on a GPU by default) and is
gathered in it, so no FSDP mixed-precision policy is needed; compute follows
``train.precision`` (autocast) as without sharding; the trainable weights and their
gradients stay fp32, so the gradient average is an fp32 reduction.

Activation checkpointing (``model.gradient_checkpointing``) recomputes each block inside its
FSDP unit during backward, which FSDP2 recognises (tested on CPU processes: exact adapters).

Evaluation. Every forward of a sharded model is a collective (its blocks are gathered), so
every process must run as many forwards, while each one generates answers for its own share
of the test set. ``lockstep`` pairs them: before each forward a process says (one all-reduce)
that it has one to run; a process that has finished its share (it reached a barrier,
``coin.engine.dist.barrier``) answers each such round with a one-token dummy forward until no
process has work left. Answers are those of the unsharded model (the same weights, gathered
whole before each block runs).

Methods. A method whose hooks may touch the model (``MODEL_HOOKS``: ``before_task``, ``loss``,
``after_task``, ``eval_model``, ``restore``) runs under FSDP only if it declares
``supports_fsdp = True``: every process must run the same
forwards and backwards in those hooks (the same seeded samples), and it must not read the
frozen base weights outside a forward (they are shards there). A method that only changes
the training data (``train_data``) needs no declaration; ``supports_fsdp = False`` refuses,
with the reason ``fsdp_refusal`` gives (both declared on ``Method``, ``coin.methods.base``).
Others are refused by name before any training (``refusal``).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

from coin.engine import dist, weights_from_main

# the hooks that may run the model or read its weights (a hook a method does not override is the base's no-op)
MODEL_HOOKS = ("before_task", "loss", "after_task", "eval_model", "restore")
BUCKET = 1 << 24  # elements per gradient all-reduce (64 MB of fp32)


def active(strategy: str) -> bool:
    """Whether ``dist.strategy`` shards this launch (FSDP needs at least two processes)."""
    return strategy == "fsdp" and dist.world() > 1


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` (or a module inside it) was wrapped by ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper: what ``forward`` and ``generate`` both call."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def refusal(method_cls: type, name: str) -> str | None:
    """Why method ``name`` cannot run under FSDP, or None when it can (see the module doc)."""
    from coin.methods import Method

    declared = method_cls.supports_fsdp  # declared on Method: None unless the method says (coin.methods.base)
    if declared is True:
        return None
    if isinstance(declared, str) or declared is False:  # a 0.x plugin's reason string still refuses with it
        reason = declared if isinstance(declared, str) else method_cls.fsdp_refusal
        why = f": {reason}" if reason else ""
        return f"method '{name}' does not support dist.strategy fsdp{why}"
    touched = [h for h in MODEL_HOOKS if getattr(method_cls, h, None) is not getattr(Method, h, None)]
    if not touched:
        return None
    return (f"method '{name}' overrides {', '.join(touched)} and does not declare supports_fsdp = True; under "
            "dist.strategy fsdp the frozen weights are shards outside a forward and every process must run the "
            "same forwards, which a method must state it respects (docs/distributed.md). Use dist.strategy ddp")


def check_method(name: str) -> None:
    """Raise ``UnsupportedLaunch`` naming method ``name`` when it cannot run under FSDP (``refusal``)."""
    from coin.methods import METHODS

    why = refusal(METHODS.get(name), name)
    if why is not None:
        raise dist.UnsupportedLaunch(why)


def blocks(model: nn.Module) -> list[nn.Module]:
    """The units sharded one by one: the items of every outermost ``nn.ModuleList`` whose items hold
    trainable weights, i.e. the adapted decoder blocks (not the frozen vision tower's)."""
    found: list[nn.Module] = []
    taken: set[int] = set()
    for _, module in inner_model(model).named_modules():
        if id(module) in taken or not isinstance(module, nn.ModuleList):
            continue
        items = [m for m in module if any(p.requires_grad for p in m.parameters())]
        if items:
            found += items
            taken.update(id(m) for item in items for m in item.modules())
    return found


def shard(model: nn.Module, device: torch.device, log=print, from_main: bool = False) -> int:
    """Shard ``model``'s frozen weights over every process (in place); returns the number of block units.

    The trainable weights are left whole (``ignored_params``) and moved to ``device`` with the
    buffers; FSDP moves the shards it keeps there itself. ``from_main``: only the main process holds
    the weights (the others built ``model`` on the meta device): each process receives its shards
    from it (``coin.engine.weights_from_main``).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    hf = inner_model(model)
    whole = weights_from_main.whole_copy(hf) if from_main else None
    mesh = init_device_mesh(device.type, (dist.world(),))
    trainable = {p for p in hf.parameters() if p.requires_grad}
    units = blocks(hf)
    if not units:
        raise RuntimeError("dist.strategy fsdp found no decoder blocks holding adapter weights to shard")
    for unit in units:
        fully_shard(unit, mesh=mesh, ignored_params={p for p in unit.parameters() if p in trainable})
    fully_shard(hf, mesh=mesh, ignored_params=trainable)
    frozen = sum(p.numel() for p in hf.parameters() if not p.requires_grad)
    log(f"dist.strategy fsdp: {frozen / 1e6:.1f}M frozen weights sharded over {dist.world()} processes "
        f"({len(units)} decoder blocks, the rest as one unit); {sum(p.numel() for p in trainable) / 1e6:.2f}M "
        "trainable weights replicated; eval.cache_vision off")
    if from_main:
        weights_from_main.receive_shards(hf, whole, device)
        del whole
        ready(model, device)
    elif not any(p.is_meta for p in hf.parameters()):  # a model built on the meta device is made real first
        ready(model, device)
    return len(units)


def ready(model: nn.Module, device: torch.device) -> None:
    """Finish a sharded model: the replicated weights and the buffers on ``device``, FSDP's buffers made.

    ``shard`` calls it; a model sharded on the meta device (``bench/bench_fsdp.py``: a 13B model is
    never built whole) calls it once its weights are real (``to_empty`` and an init).
    """
    hf = inner_model(model)
    with torch.no_grad():
        for p in hf.parameters():
            if p.requires_grad and p.device != device:
                p.data = p.data.to(device)
        for module in hf.modules():
            for key, buf in module._buffers.items():
                if buf is not None and buf.device != device:
                    module._buffers[key] = buf.to(device)
        # one forward outside inference mode, so FSDP allocates its gather buffers as normal tensors: buffers
        # first made under evaluation's inference mode could not be written by a later training step
        hf(**_dummy(hf, _pad_id(hf)), use_cache=False)
    # the root unit keeps its weights gathered from its forward to its backward (FSDP2's root never
    # reshards after forward), so the view tensors it returns (the logits) need no pre-backward gather
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")


def reshard(model: nn.Module) -> None:
    """Free every gathered unit of a sharded ``model`` (a no-op for a plain one), on every process.

    Called before the main process alone reads the model (saving the adapter): ``state_dict``
    reshards the units it reads, and a unit resharded on one process only would be gathered by it
    alone at the next forward, a collective the others do not join.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def adamw(groups: list[dict], shard_state: bool, **kwargs) -> torch.optim.Optimizer:
    """AdamW over ``groups``; with ``shard_state`` on several processes each keeps the moments of its
    share of the weights only and broadcasts its weights after each step (ZeRO stage 1).

    Every process must call ``step`` (it is a collective then), which the training loop does.
    """
    if not shard_state or dist.world() < 2:
        return torch.optim.AdamW(groups, **kwargs)
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(groups, optimizer_class=torch.optim.AdamW, **kwargs)


def is_sharded_optimizer(opt: torch.optim.Optimizer) -> bool:
    return hasattr(opt, "consolidate_state_dict")


@contextmanager
def optimizer_state_on_main(opt: torch.optim.Optimizer) -> Iterator[None]:
    """Inside, ``opt.state_dict()`` on the main process is the whole state (every process's moments,
    indexed as an unsharded AdamW indexes them), e.g. to write a checkpoint; every process must enter.
    The gathered copy is dropped on leaving (it is the moments' size in host memory)."""
    if not is_sharded_optimizer(opt):
        yield
        return
    opt.consolidate_state_dict(to=0)
    try:
        yield
    finally:
        opt._all_state_dicts = []  # ZeroRedundancyOptimizer keeps the gathered copy until the next gather


def local_state_bytes(opt: torch.optim.Optimizer) -> int:
    """The bytes of optimiser state this process holds (its share when the state is sharded)."""
    state = opt.optim.state if is_sharded_optimizer(opt) else opt.state
    return sum(v.numel() * v.element_size() for st in state.values() for v in st.values()
               if torch.is_tensor(v) and v.dim() > 0)


def reduce_gradients(params: list[torch.Tensor]) -> None:
    """Average the replicated weights' gradients over processes (what DDP does in backward).

    A parameter with a gradient on some process but not on this one gets zeros here, so every
    process reduces the same buckets; one without a gradient anywhere keeps none (the optimiser
    skips it, as without sharding).
    """
    import torch.distributed as tdist

    world = dist.world()
    device = params[0].device if params else torch.device("cpu")
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8,
                       device=device if tdist.get_backend() == "nccl" else "cpu")
    tdist.all_reduce(has, op=tdist.ReduceOp.MAX)
    params = [p for p, h in zip(params, has.tolist()) if h]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    for start, end in _buckets([g.numel() for g in grads]):
        part = grads[start:end]
        flat = torch.cat([g.reshape(-1) for g in part])
        tdist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in part:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def _buckets(sizes: list[int]) -> list[tuple[int, int]]:
    """Index ranges of consecutive tensors whose sizes add up to about ``BUCKET`` elements each."""
    out, start, total = [], 0, 0
    for k, n in enumerate(sizes):
        if total and total + n > BUCKET:
            out.append((start, k))
            start, total = k, 0
        total += n
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out


def _pad_id(hf: nn.Module) -> int:
    """A token id to feed dummy forwards (the model's pad token, else 0)."""
    pad = getattr(getattr(hf, "config", None), "pad_token_id", None)
    text = getattr(getattr(hf, "config", None), "text_config", None)
    pad = pad if pad is not None else getattr(text, "pad_token_id", None)
    return int(pad) if isinstance(pad, int) else 0


def _dummy(hf: nn.Module, token: int) -> dict[str, torch.Tensor]:
    """A one-token text-only batch on the device of the model's frozen weights: its forward gathers every
    sharded unit once, as any forward does (the vision tower is not a unit of its own)."""
    device = next(p for p in hf.parameters() if not p.requires_grad).device
    return {"input_ids": torch.full((1, 1), token, dtype=torch.long, device=device),
            "attention_mask": torch.ones(1, 1, dtype=torch.long, device=device)}


def _round(flag: int) -> int:
    """One lockstep round: how many processes have a forward to run now (this one counts ``flag``)."""
    return int(dist.sum_over_processes(float(flag)))


@contextmanager
def lockstep(model: nn.Module, pad_id: int | None = None) -> Iterator[None]:
    """Evaluation of a sharded ``model`` where processes run different numbers of forwards (module doc).

    Inside the block each forward of the model is announced to the others; ``dist.barrier``
    (and leaving the block) first serves dummy forwards until every process is done.
    """
    hf = inner_model(model)
    dummy = _dummy(hf, pad_id if pad_id is not None else _pad_id(hf))

    serving = False

    def announce(module, args, kwargs):
        if not serving:
            _round(1)

    def drain() -> None:
        nonlocal serving
        serving = True
        try:
            with torch.inference_mode():
                while _round(0):
                    hf(**dummy, use_cache=False)
        finally:
            serving = False

    handle = hf.register_forward_pre_hook(announce, prepend=True, with_kwargs=True)
    previous = dist.set_drain(drain)
    try:
        yield
        drain()
        reshard(model)
    finally:
        handle.remove()
        dist.set_drain(previous)


def evaluating(vlm, sharded: bool):
    """The context evaluation runs in: ``lockstep`` for a sharded model, nothing otherwise."""
    return lockstep(vlm.model, vlm.tokenizer.pad_token_id) if sharded else nullcontext()
