"""Routing test inputs to an adapter bank's stored adapters: input features and evaluation wrappers.

Methods that choose or mix per-task adapters without a task id (DISCO, HiDe-LLaVA) describe
each input by features every backbone has:

- ``instruction_features``: the mean of the LM's input embeddings over the tokens of the
  prompt text (the question and the task's instruction line, without chat template or image);
- ``vision_features``: the mean of the LM's input embeddings at the image-token positions,
  i.e. the projected image features as the LM receives them (one forward up to the first
  decoder layer, which is then stopped); zeros for a text-only input, which has none.

Both come from weights the methods never train (the embedding table; the vision tower), except
the projector when ``adapter.train_projector`` is on: later tasks then move the image features
that earlier tasks' anchors were taken with.

Evaluation goes through a wrapper the method returns from ``Method.eval_model``:
``GroupedVLM`` sends each group of inputs routed to one adapter through the model with that
adapter alone (coin's fast decoding is kept); ``MixedVLM`` sets per-row weights before one
batched generation, which needs every row to stay in place while decoding (``row_stable``).
Both are ``RoutedVLM``s: they record each input's top route (its adapter, or its largest weight)
under the test task the input comes from (``Sample.task``, which the routing itself never reads),
so the evaluation can report routing accuracy per task (``RoutedVLM.take``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
import torch.nn.functional as F

from coin.adapters.bank import AdapterBank
from coin.errors import RoutingError

if TYPE_CHECKING:
    from coin.data.sample import Sample
    from coin.models.backbone import VLM


def _hf_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _image_token_id(model) -> int | None:
    cfg = model.config
    for key in ("image_token_id", "image_token_index"):
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def check_routable(vlm: VLM, vision: bool = True) -> None:
    """Raise ``RoutingError`` naming what is missing when features cannot be taken from ``vlm``."""
    model = _hf_model(vlm.model)
    if model.get_input_embeddings() is None:
        raise RoutingError(f"{type(model).__name__} has no input embeddings to take instruction features from")
    if vision:
        if not hasattr(model, "get_decoder"):
            raise RoutingError(f"{type(model).__name__} has no get_decoder(): cannot take image features "
                               "at the LM's input")
        if _image_token_id(model) is None:
            raise RoutingError(f"{type(model).__name__}'s config has no image_token_id: cannot find its image tokens")


@torch.no_grad()
def instruction_features(vlm: VLM, samples: list[Sample]) -> torch.Tensor:
    """(n, hidden) float32: each prompt's mean input embedding (an empty prompt gives zeros)."""
    embed = _hf_model(vlm.model).get_input_embeddings()
    device = embed.weight.device
    ids = vlm.tokenizer([s.prompt for s in samples], add_special_tokens=False)["input_ids"] if samples else []
    rows = [embed(torch.tensor(x, device=device)).float().mean(0) if x else
            torch.zeros(embed.weight.shape[1], device=device) for x in ids]
    return torch.stack(rows).cpu() if rows else torch.zeros(0, embed.weight.shape[1])


class _Stop(Exception):
    """Raised by the capture hook once the LM's input is known: the rest of the forward is not needed."""


@torch.no_grad()
def vision_features(vlm: VLM, samples: list[Sample], batch_size: int = 16) -> torch.Tensor:
    """(n, hidden) float32: the mean of each input's image-token embeddings at the LM's input (zeros for a
    text-only sample: no image, no image tokens; its cosine with any anchor is 0)."""
    model = _hf_model(vlm.model)
    image_id = _image_token_id(model)
    decoder = model.get_decoder()
    build = getattr(vlm, "generation_batch", None) or vlm.train_batch  # prompt only where the wrapper can
    captured: dict[str, torch.Tensor] = {}

    def capture(module, args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"] if kwargs.get("inputs_embeds") is not None else args[0]
        raise _Stop

    handle = decoder.register_forward_pre_hook(capture, with_kwargs=True)
    device = next(vlm.model.parameters()).device
    was_training = vlm.model.training
    vlm.model.eval()
    out = []
    try:
        for k in range(0, len(samples), batch_size):
            part = samples[k : k + batch_size]
            batch = {key: v.to(device) for key, v in build(part).items() if key != "labels"}
            try:
                vlm.model(**batch)
            except _Stop:
                pass
            embeds = captured.pop("embeds", None)
            if embeds is None or not embeds.is_floating_point() or embeds.dim() != 3:
                raise RoutingError(f"{type(model).__name__}'s decoder did not receive input embeddings "
                                   "(batch, tokens, hidden): cannot take image features at the LM's input")
            mask = (batch["input_ids"] == image_id).unsqueeze(-1)
            counts = mask.sum(1)
            bad = [s.id for s, c in zip(part, counts[:, 0].tolist()) if c == 0 and s.image is not None]
            if bad:
                raise RoutingError(f"no image token ({image_id}) in the model input of {', '.join(bad[:3])}")
            out.append(((embeds.float() * mask).sum(1) / counts.clamp(min=1)).cpu())
    finally:
        handle.remove()
        vlm.model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.get_input_embeddings().weight.shape[1])


def cosine(features: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(n, k) cosine similarities between rows of ``features`` (n, d) and ``anchors`` (k, d)."""
    return F.normalize(features.float(), dim=-1) @ F.normalize(anchors.float(), dim=-1).T


@contextmanager
def row_stable(vlm: VLM) -> Iterator[None]:
    """While inside, ``vlm.generate`` keeps every batch row through decoding (per-row weights stay valid).

    coin's own decoding drops finished rows and shares image prefixes across rows; this switches
    a wrapper that has those (``decoding``, ``share_prefix``) to ``model.generate`` with per-row
    prefill for the block, and back after. The answers are the same (tested in test_decode).
    """
    saved = {k: vlm.__dict__[k] for k in ("decoding", "share_prefix") if k in vlm.__dict__}
    try:
        if getattr(vlm, "share_prefix", False):
            vlm.share_prefix = False
        if getattr(vlm, "decoding", None) == "coin":
            vlm.decoding = "hf"
        yield
    finally:
        for k in ("decoding", "share_prefix"):
            vlm.__dict__.pop(k, None)
        vlm.__dict__.update(saved)


class _Wrapper:
    """Everything but ``generate`` is the wrapped ``VLM``'s own."""

    def __init__(self, vlm: VLM) -> None:
        self.__dict__["inner"] = vlm

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)


class RoutedVLM(_Wrapper):
    """A wrapper that routes test inputs to stored adapters and records where each input's top route went.

    ``experts``: what each stored adapter is, in ``bank.names`` order: the task it was trained on
    (a method passes ``ctx.tasks``), or, without one, the adapter's own name. The record is keyed
    by ``Sample.task``, the test set the input comes from: known to the evaluation, never read by
    the routing.
    """

    def __init__(self, vlm: VLM, experts: list[str] | None = None) -> None:
        super().__init__(vlm)
        names = AdapterBank.of(vlm.model).names
        self.__dict__["experts"] = list(experts[: len(names)]) if experts is not None else names
        self.__dict__["routes"] = {}  # test task -> inputs per stored adapter (bank order)
        self.__dict__["fallbacks"] = {}  # test task -> inputs the router could not route (a method's fallback took them)

    def record(self, samples: list[Sample], top: list[int]) -> None:
        """Count each input under its test task at its top route ``top[i]`` (an index in ``bank.names``)."""
        for s, k in zip(samples, top):
            self.routes.setdefault(s.task, [0] * len(self.experts))[int(k)] += 1

    def fell_back(self, samples: list[Sample]) -> None:
        """Count inputs whose route is a method's fallback (e.g. a router answer naming no adapter), by test task."""
        for s in samples:
            self.fallbacks[s.task] = self.fallbacks.get(s.task, 0) + 1

    def take_fallbacks(self, task: str) -> int:
        """Inputs of test task ``task`` routed by a fallback since the last call; the count starts again from zero."""
        return self.fallbacks.pop(task, 0)

    def take(self, task: str) -> dict[str, int]:
        """Inputs of test task ``task`` per top route (one key per stored adapter, in bank order), since the
        last ``take`` of that task; the count starts again from zero."""
        return dict(zip(self.experts, self.routes.pop(task, [0] * len(self.experts))))


class GroupedVLM(RoutedVLM):
    """``vlm`` whose ``generate`` routes each input to one stored adapter: ``choose(samples)`` gives
    each sample's adapter index (``bank.names`` order), and each group runs with that adapter alone."""

    def __init__(self, vlm: VLM, choose: Callable[[list], list[int]], experts: list[str] | None = None) -> None:
        super().__init__(vlm, experts)
        self.__dict__["choose"] = choose

    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        bank = AdapterBank.of(self.inner.model)
        choice = self.choose(samples)
        self.record(samples, choice)
        out: list[str] = [""] * len(samples)
        for k in sorted(set(choice)):
            rows = [i for i, c in enumerate(choice) if c == k]
            bank.set_mix([1.0 if j == k else 0.0 for j in range(len(bank.names))])
            for i, text in zip(rows, self.inner.generate([samples[i] for i in rows], max_new_tokens)):
                out[i] = text
        return out


class MixedVLM(RoutedVLM):
    """``vlm`` whose ``generate`` first calls ``mix(samples)``, which sets the bank's per-row weights and
    returns the (rows, n) routing weights (their largest is each input's top route), and then
    generates the batch with its rows kept in place (``row_stable``)."""

    def __init__(self, vlm: VLM, mix: Callable[[list], torch.Tensor], experts: list[str] | None = None) -> None:
        super().__init__(vlm, experts)
        self.__dict__["mix"] = mix

    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        self.record(samples, self.mix(samples).argmax(dim=-1).tolist())
        with row_stable(self.inner):
            return self.inner.generate(samples, max_new_tokens)
