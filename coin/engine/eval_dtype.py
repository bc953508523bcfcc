"""Evaluation in the base model's dtype: the fp32 adapter computed in bf16 (or fp16) where the base is.

coin keeps every trainable parameter in fp32 (an update of 2e-5 vanishes in bf16), and PEFT casts a
LoRA layer's input to its weights' dtype. Unchecked, generation on a bf16 base then runs every
adapter matmul in fp32, an estimated 1.3-1.6x slower prefill on a GPU. ``in_base_dtype`` runs the
block under autocast to the frozen base's dtype when that is a half type, so the adapter computes as
the base does (its weights stay fp32; training is unchanged). On an fp32 base (a CPU run, the test
suite) it does nothing: the equalities the tests pin (batched answers equal one-by-one answers,
a resumed evaluation equals an uninterrupted one, sharded equals unsharded) hold exactly in fp32;
in bf16 the order of a reduction can change a near-tie, on the GPU as in training.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

HALF = (torch.bfloat16, torch.float16)


def base_dtype(model: torch.nn.Module | None) -> torch.dtype | None:
    """The dtype of ``model``'s frozen weights when it is a half type, else None (nothing to do)."""
    if model is None or not hasattr(model, "parameters"):
        return None
    for p in model.parameters():
        if not p.requires_grad and p.is_floating_point():
            return p.dtype if p.dtype in HALF else None
    return None


@contextmanager
def in_base_dtype(model: torch.nn.Module | None) -> Iterator[torch.dtype | None]:
    """Autocast to the frozen base's half dtype for the block (yields it; None: fp32, no autocast)."""
    dtype = base_dtype(model)
    if dtype is None:
        with nullcontext():
            yield None
        return
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=dtype):
        yield dtype
