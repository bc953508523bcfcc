"""The training loss with the LM head run only where there is a label (``train.logits: labelled``).

A causal LM's loss reads the logits of the positions whose next token is labelled: the answers and
their end-of-sequence tokens. Everything else (the image tokens, the prompt, the padding) is
projected onto the vocabulary and thrown away. At Qwen2-VL-7B's shapes (one large photo is 1,230
image tokens, rows of about 1,310 tokens, 152,064 words) the full logits of a batch of 16 take
about 42 GiB in bf16 with their float32 copy; the labelled positions are a few percent of them.

``labelled_loss`` asks the model for the logits of those positions only (transformers' boolean
``logits_to_keep``: the positions ``p`` with ``labels[:, p + 1] != -100``, flattened) and takes the
same mean cross-entropy over them that transformers takes over the whole sequence (float32, the
mean over labelled tokens). The logits are the same rows of the same matrix product, so the loss
is the full-logits loss up to the order of a float sum (``tests/test_lm_loss.py``). A model whose
``forward`` does not take ``logits_to_keep`` (MiniGPT-v2's and Qwen-VL-Chat's own code) gets the
full logits, as before; ``train.logits: all`` asks for them everywhere (a plugin method that reads
``outputs.logits`` over the whole sequence needs them).
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
import torch.nn.functional as F

from coin.models.sequences import keep_mask

LOGIT_MODES = ("labelled", "all")


@lru_cache(maxsize=None)
def _takes_keep(forward_cls: type) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(forward_cls.forward).parameters
    except (TypeError, ValueError):
        return False


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under coin's wrappers (DDP's ``module``, PEFT's ``base_model.model``)."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):  # DDP
            model = model.module
        elif hasattr(model, "get_base_model"):  # PEFT
            model = model.get_base_model()
        else:
            break
    return model


def supports_labelled(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward can compute the logits of chosen positions only."""
    return _takes_keep(type(_inner(model)))


def labelled_loss(model: torch.nn.Module, batch: dict):
    """``model``'s outputs for ``batch`` with ``logits`` of the labelled positions only, flattened to
    ``(n, vocab)`` in row order, and ``loss`` their mean cross-entropy (float32)."""
    labels = batch["labels"]
    keep = keep_mask(labels)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    outputs = model(**inputs, logits_to_keep=keep)
    logits = outputs.logits
    targets = labels[:, 1:][keep[:, :-1]]
    if targets.numel() == 0:  # nothing to learn in this micro-batch (e.g. every answer cut off)
        outputs.loss = logits.sum() * 0.0
    else:
        outputs.loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       reduction="mean")
    return outputs


def forward_with_loss(model: torch.nn.Module, batch: dict, mode: str = "labelled"):
    """The training forward: ``labelled_loss`` where the model allows it and ``mode`` asks for it, else
    the model's own (full logits and transformers' loss)."""
    if mode == "labelled" and "labels" in batch and supports_labelled(model):
        return labelled_loss(model, batch)
    return model(**batch)
