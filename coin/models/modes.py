"""The model's modes around a wrapper's work: no autograd through a frozen tower, eval mode while generating."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def no_grad_when_frozen(module: torch.nn.Module) -> torch.nn.Module:
    """Run ``module`` (and each of its direct parts) without autograd while none of its weights train.

    A frozen vision tower needs no graph, but ``enable_input_require_grads`` (which gradient
    checkpointing needs) hooks every input embedding, the tower's patch embedding included, so
    the tower's activations were kept and back-propagated for nothing. The check runs at each
    call, so a tower that is trained (the tiny model's vision pretraining) keeps its gradients,
    and so does a trained part inside a tower (Qwen2-VL's merger), since the parts are hooked
    one by one. The hooks take the module as an argument: a copied model carries them along.
    """
    parts = [module]
    for child in module.children():
        parts += list(child.children()) if isinstance(child, torch.nn.ModuleList) else [child]
    for part in parts:
        part.register_forward_pre_hook(_enter_no_grad)
        part.register_forward_hook(_leave_no_grad, always_call=True)
    return module


def _enter_no_grad(module, args) -> None:
    stack = module.__dict__.setdefault("_coin_grad_stack", [])
    off = torch.is_grad_enabled() and not any(p.requires_grad for p in module.parameters())
    stack.append(off)
    if off:
        torch.set_grad_enabled(False)


def _leave_no_grad(module, args, output) -> None:
    if module.__dict__.get("_coin_grad_stack", [False]).pop():
        torch.set_grad_enabled(True)


@contextmanager
def generating(model, batch: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """``batch`` on the model's device, with the model in eval mode for the block (its mode restored after)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        yield {k: v.to(device) for k, v in batch.items()}
    finally:
        model.train(was_training)


def checkpoint_activations(model: torch.nn.Module) -> None:
    """Turn on activation (gradient) checkpointing, non-reentrant, by the name the installed transformers has.

    transformers 5.x renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``
    (the old name warns); input embeddings are made to require grad so checkpointed blocks get
    gradients under frozen embeddings.
    """
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def activation_checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether ``model`` checkpoints its activations, read by the name the installed transformers has
    (``is_activation_checkpointing`` from 5.23, ``is_gradient_checkpointing`` before; the old name warns)."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)
