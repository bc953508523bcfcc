"""The main process reads the model's weights; the other processes receive them.

Without this, every process of a launch read the whole model into host memory before moving
or sharding it: 8 copies on an 8-GPU node (208 GB of host memory for LLaVA-1.5-13B in bf16).
When the backbone declares ``loads_empty`` (``coin.models.empty``), the other processes build
the model on the meta device, reading no weights, and then

- unsharded (one process, DDP): every process holds the whole model on its device; the main
  process moves its copy there, the others allocate theirs there (``to_empty``), and each
  weight and buffer is broadcast from the main process (``receive_whole``);
- sharded (``dist.strategy: fsdp``): the model is sharded first, the others allocate only their
  shards, and each sharded weight is scattered from the main process's whole copy, so a process
  only ever holds its 1/N of the frozen base; the replicated trainable weights and the buffers
  are broadcast (``receive_shards``).

Host memory: the main process holds one copy, the others none. The weights end bit-identical
to every process reading them itself (tests/test_distributed.py, tests/test_fsdp.py).
"""

from __future__ import annotations

import torch
from torch import nn

from coin.engine import dist


def sending(backbone: type) -> bool:
    """Whether this launch's weights travel from the main process (several processes, a backbone that
    builds empty models); the same answer on every process."""
    return dist.world() > 1 and bool(getattr(backbone, "loads_empty", False))


def builds_empty(backbone: type) -> bool:
    """Whether this process builds the model without weights (it will receive them)."""
    return sending(backbone) and not dist.is_main()


def _broadcast(t: torch.Tensor, device: torch.device) -> None:
    """``t`` (in place) takes the main process's values; sent through ``device`` (the backend's kind)."""
    import torch.distributed as tdist

    if t.device == device:
        tdist.broadcast(t, 0)
        return
    moved = t.detach().to(device)
    tdist.broadcast(moved, 0)
    t.copy_(moved)


@torch.no_grad()
def receive_whole(model: nn.Module, device: torch.device) -> None:
    """Put ``model`` on ``device`` in every process with the main process's weights and buffers."""
    if dist.is_main():
        model.to(device)
    else:
        model.to_empty(device=device)
    for _, p in model.named_parameters():
        _broadcast(p.data, device)
    for _, b in model.named_buffers():
        _broadcast(b, device)


def whole_copy(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The main process's weights by name, taken before sharding (``receive_shards`` scatters them)."""
    return {n: p.detach() for n, p in model.named_parameters()} if dist.is_main() else None


@torch.no_grad()
def receive_shards(model: nn.Module, whole: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Fill a model sharded with ``fully_shard`` from the main process's ``whole`` copy (``whole_copy``):
    each process allocates and receives its shard of every sharded weight; the weights FSDP leaves
    whole (the trainable ones) and the buffers are broadcast."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not dist.is_main():
        model.to_empty(device=device)  # only the shards this process keeps, and the replicated weights
    for name, p in model.named_parameters():
        if isinstance(p.data, DTensor):
            local = p.data.to_local()
            source = whole[name].to(local.device) if whole is not None else \
                torch.empty(p.shape, dtype=p.dtype, device=local.device)
            local.copy_(distribute_tensor(source, p.data.device_mesh, p.data.placements, src_data_rank=0).to_local())
        else:
            _broadcast(p.data, device)
    for _, b in model.named_buffers():
        _broadcast(b, device)
