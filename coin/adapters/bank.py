"""The adapter bank: several named LoRA adapters on one PEFT model, mixed into each layer by hooks.

Methods that keep one LoRA per task (O-LoRA, HiDe-LLaVA, DISCO) share this machinery, built
once. The PEFT model the engine attaches has one adapter, ``default``: the bank's *current*
slot, the only one that trains. After a task the method ``store``s it: PEFT's ``add_adapter``
creates a frozen adapter (``task01``, ``task02``, ... by stage) with the same rank, alpha and
target modules, and the current weights are copied into it; ``clear_current`` then zeroes the
current slot's B, so it adds exactly nothing until ``reset_current`` draws a fresh LoRA for
the next task (PEFT's own init: A uniform in ±1/sqrt(fan_in), B zero; drawn from a seeded
CPU generator, so it does not depend on the device or on what ran before).

How stored adapters reach the output: PEFT runs only the active adapter (``default``); a
forward hook on every LoRA layer adds ``sum_k w_k * scaling_k * B_k A_k x`` for the stored
ones. ``w`` is set by the method (``set_mix``): weights for all layers, either one per stored
adapter (O-LoRA sums them all, DISCO's hard routing picks one) or one per adapter and batch
row (DISCO's soft mixing, per input), and optionally other weights for chosen decoder layers,
again per adapter or per adapter and row (HiDe's last layer, mixed per input). With
``fuse=True`` the layers without an override instead add ``scaling * (sum_k B_k)(sum_k A_k) x``
over the adapters of weight 1: the factors summed first and their product applied, cross terms
``B_j A_k`` included (HiDe-LLaVA's released lower layers). PEFT's own multi-adapter activation
(``set_adapter([...])``) is not used for this: it makes every active adapter trainable and has
no per-layer or per-row weights. Stored adapters run without dropout.

Persistence: ``save_pretrained`` writes every stored adapter as a standard PEFT adapter in its
own sub-folder of the stage's ``adapter/`` folder (safetensors), and ``restore_saved`` (called
by ``coin.adapters.load_adapter``) adds them back, frozen, so a resumed run has the same bank.
The bank object itself lives on the model (one per PEFT model, hooks registered once).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from coin.errors import BankError

CURRENT = "default"  # the PEFT adapter the engine attaches: the bank's trainable slot
_LAYER = re.compile(r"\.layers\.(\d+)\.")  # a decoder block's index inside a LoRA module's name


def adapter_name(stage: int) -> str:
    """The stored adapter of stage ``stage`` (0-based): ``task01``, ``task02``, ..."""
    return f"task{stage + 1:02d}"


def _lora_layers(model) -> list[tuple[str, Any]]:
    from peft.tuners.lora.layer import Linear as LoraLinear

    out = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and CURRENT in getattr(module, "lora_A", {}):
            if type(module) is not LoraLinear:
                raise BankError(f"adapter bank: {name} is a {type(module).__name__}, not a plain PEFT LoRA Linear; "
                                "the bank keeps plain LoRA adapters (adapter.type: lora)")
            out.append((name, module))
    if not out:
        raise BankError(f"adapter bank: {type(model).__name__} has no PEFT LoRA layer with a '{CURRENT}' adapter")
    return out


class AdapterBank:
    """Named frozen LoRA adapters beside the trainable ``default`` one, mixed by forward hooks.

    Get it with ``AdapterBank.of(model)`` (one per PEFT model). Stored adapters are listed by
    ``names`` in stage order; ``set_mix`` says how much of each every layer adds.
    """

    def __init__(self, model) -> None:
        if not hasattr(model, "add_adapter") or not hasattr(model, "peft_config"):
            raise BankError(f"adapter bank: {type(model).__name__} is not a PEFT model")
        self.model = model
        self.layers = _lora_layers(model)
        indices = [int(m.group(1)) for n, _ in self.layers if (m := _LAYER.search(n))]
        self.last_layer: int | None = max(indices) if indices else None
        self.default = torch.zeros(0)  # (n,) or (rows, n) weights of every layer without an override
        self.fused = False  # layers without an override apply the summed factors (set_mix(fuse=True))
        self.overrides: dict[int, torch.Tensor] = {}  # decoder layer -> (n,) or (rows, n) weights
        for name, module in self.layers:
            m = _LAYER.search(name)
            module.__dict__["_coin_bank_layer"] = int(m.group(1)) if m else None
            module.register_forward_hook(self._hook)
        model.__dict__["_coin_bank"] = self

    @classmethod
    def of(cls, model) -> "AdapterBank":
        """The bank of ``model``, created (and its hooks registered) on first use."""
        bank = model.__dict__.get("_coin_bank")
        return bank if bank is not None else cls(model)

    # ------------------------------------------------------------------ what is stored
    @property
    def names(self) -> list[str]:
        """The stored adapters, in stage order (every PEFT adapter but ``default``)."""
        return sorted(n for n in self.model.peft_config if n != CURRENT)

    def store(self, name: str) -> None:
        """Copy the current adapter's weights into the frozen adapter ``name`` (added when missing)."""
        if name == CURRENT:
            raise ValueError(f"'{CURRENT}' is the bank's current slot; store under another name")
        if name not in self.model.peft_config:
            config = copy.deepcopy(self.model.peft_config[CURRENT])
            config.modules_to_save = None  # the projector stays one shared module
            config.lora_dropout = 0.0
            self.model.add_adapter(name, config)
        with torch.no_grad():
            for _, module in self.layers:
                for part in (module.lora_A, module.lora_B):
                    part[name].weight.copy_(part[CURRENT].weight)
                    part[name].weight.requires_grad_(False)

    def pairs(self, name: str) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(layer name, A, B) of adapter ``name`` in every LoRA layer (the live tensors)."""
        return [(n, m.lora_A[name].weight, m.lora_B[name].weight) for n, m in self.layers]

    def reset_current(self, *tags: object) -> None:
        """A fresh current LoRA: A uniform in ±1/sqrt(fan_in) (PEFT's kaiming init), B zero.

        Drawn on the CPU from a generator seeded by ``tags``, so the same tags give the same
        LoRA on any device and after a resume.
        """
        seed = int.from_bytes(hashlib.sha256(":".join(map(str, tags)).encode()).digest()[:8], "little")
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for _, module in self.layers:
                a = module.lora_A[CURRENT].weight
                bound = 1.0 / math.sqrt(a.shape[1])
                a.copy_(torch.empty(a.shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen))
                module.lora_B[CURRENT].weight.zero_()

    def clear_current(self) -> None:
        """Zero the current adapter's B: it then adds exactly nothing (its weights live on in a stored copy)."""
        with torch.no_grad():
            for _, module in self.layers:
                module.lora_B[CURRENT].weight.zero_()

    def freeze_stored(self) -> None:
        """Make sure no stored adapter trains (PEFT may mark adapters trainable when it switches them)."""
        for name in self.names:
            for _, a, b in self.pairs(name):
                a.requires_grad_(False)
                b.requires_grad_(False)

    # ------------------------------------------------------------------ how they mix
    @property
    def weights(self) -> list:
        """The weights of the layers without an override: one per stored adapter (or a list per batch row)."""
        return self.default.tolist()

    def set_mix(self, weights: float | list[float] | torch.Tensor, layers: dict[int, Any] | None = None,
                fuse: bool = False) -> None:
        """Each stored adapter's weight in every layer, and other weights for some decoder layers.

        ``weights``: one number for all stored adapters, one per adapter (``names`` order), or a
        (rows, n) tensor, one row per batch row. ``layers``: decoder layer index -> weights of
        shape (n,) or (rows, n). Per-row weights need the batch to keep its rows through decoding
        (``coin.adapters.routing``). ``fuse``: the layers without an override apply
        ``scaling * (sum B_k)(sum A_k) x`` over the adapters whose weight is 1 (weights must be 0 or 1).
        """
        n = len(self.names)
        w = torch.full((n,), float(weights)) if isinstance(weights, (int, float)) else \
            torch.as_tensor(weights, dtype=torch.float32).detach().cpu()
        if w.dim() not in (1, 2) or w.shape[-1] != n:
            raise ValueError(f"adapter bank: weights of shape {tuple(w.shape)} for {n} stored adapters")
        if fuse and (w.dim() != 1 or not bool(((w == 0) | (w == 1)).all())):
            raise ValueError(f"adapter bank: fused adapters take weights 0 or 1, one per adapter; got {w.tolist()}")
        self.default, self.fused = w, fuse
        self.overrides = {}
        for layer, lw in (layers or {}).items():
            lw = torch.as_tensor(lw, dtype=torch.float32)
            if lw.shape[-1] != n or lw.dim() > 2:
                raise ValueError(f"adapter bank: layer {layer} weights of shape {tuple(lw.shape)} "
                                 f"for {n} stored adapters")
            self.overrides[int(layer)] = lw

    def _hook(self, module, args, output):
        names = self.names
        if not names:
            return None
        layer = module.__dict__["_coin_bank_layer"]
        w = self.overrides.get(layer) if layer is not None else None
        x = args[0]
        if w is None and self.fused:
            extra = _fused(module, [name for name, v in zip(names, self.default.tolist()) if v], x)
        elif w is None and self.default.dim() == 1:  # adapters stored after the last set_mix add nothing
            extra = _mixed(module, [(name, v) for name, v in zip(names, self.default.tolist()) if v], x)
        else:
            w = self.default if w is None else w
            if w.dim() == 2 and w.shape[0] != x.shape[0]:
                raise RuntimeError(f"adapter bank: per-row weights for {w.shape[0]} rows, but a batch of "
                                   f"{x.shape[0]} reached the layer (the decoding dropped or merged rows)")
            extra = _mixed(module, [(name, w[..., k]) for k, name in enumerate(names) if bool(w[..., k].any())], x)
        return output if extra is None else output + extra.to(output.dtype)


def _mixed(module, used: list[tuple[str, Any]], x: torch.Tensor) -> torch.Tensor | None:
    """``sum_k w_k * scaling_k * B_k A_k x`` over ``used`` (name, weight: a float, or a (rows,) tensor)."""
    extra = None
    for name, wk in used:  # one adapter at a time: no concatenated copy of the stored weights
        A, B = module.lora_A[name].weight, module.lora_B[name].weight
        h = F.linear(F.linear(x.to(A.dtype), A), B)
        if isinstance(wk, float):
            h = h * (wk * module.scaling[name])
        else:
            wk = wk.to(h.device, h.dtype) * module.scaling[name]
            h = h * (wk.view(-1, *([1] * (h.dim() - 1))) if wk.dim() == 1 else wk)
        extra = h if extra is None else extra + h
    return extra


def _fused(module, used: list[str], x: torch.Tensor) -> torch.Tensor | None:
    """``scaling * (sum_k B_k)(sum_k A_k) x`` over the adapters ``used`` (HiDe-LLaVA's released fusion).

    Every stored adapter copies the current one's config, so they share one scaling; one that
    does not (a hand-made bank) is refused rather than fused under a wrong scale.
    """
    if not used:
        return None
    scaling = {module.scaling[name] for name in used}
    if len(scaling) != 1:
        raise BankError(f"adapter bank: cannot fuse adapters with different LoRA scalings {sorted(scaling)} "
                        f"({', '.join(used)})")
    A = torch.stack([module.lora_A[name].weight for name in used]).sum(0)
    B = torch.stack([module.lora_B[name].weight for name in used]).sum(0)
    return F.linear(F.linear(x.to(A.dtype), A), B) * scaling.pop()


BANK_ADAPTERS = ("lora",)  # adapter types whose layers are plain PEFT LoRA Linear layers


def bank_problems(cfg: Any, method: str) -> list[str]:
    """A bank method's refusal of adapters it cannot keep per task (``Method.check_run``)."""
    kind = getattr(cfg.adapter, "type", None)
    if kind in BANK_ADAPTERS:
        return []
    return [f"adapter.type: method {method!r} keeps one plain LoRA per task in an adapter bank, which adapter "
            f"{kind!r} is not; use one of: {', '.join(BANK_ADAPTERS)}"]


def begin_task(model, stage: int, seed: int) -> AdapterBank:
    """The bank before training stage ``stage``: a fresh current LoRA (from stage 2 on) and every stored one frozen.

    The fresh LoRA is drawn from (seed, stage) alone, so an uninterrupted run and a resumed one
    train the same one.
    """
    bank = AdapterBank.of(model)
    if stage > 0:
        bank.reset_current(seed, "bank", stage)
    bank.freeze_stored()
    return bank


def end_task(model, stage: int) -> AdapterBank:
    """The bank after training stage ``stage``: the current LoRA stored (frozen) as its adapter, the slot cleared."""
    bank = AdapterBank.of(model)
    bank.store(adapter_name(stage))
    bank.clear_current()
    return bank


def current_size(model) -> int:
    """Parameters of the current LoRA: what a bank method adds to the model per task."""
    return sum(m.lora_A[CURRENT].weight.numel() + m.lora_B[CURRENT].weight.numel() for _, m in _lora_layers(model))


def restore_saved(model, path: Path) -> list[str]:
    """Add back (frozen) the stored adapters ``save_pretrained`` wrote in sub-folders of ``path``.

    A PEFT model saves each non-default adapter in ``path/<name>/``; an adapter already on the
    model gets the saved weights. Returns the names restored.
    """
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    found = []
    for sub in sorted(p for p in Path(path).iterdir() if (p / "adapter_model.safetensors").is_file()):
        name = sub.name
        if name not in model.peft_config:
            model.add_adapter(name, PeftConfig.from_pretrained(str(sub)))
        result = set_peft_model_state_dict(model, load_file(str(sub / "adapter_model.safetensors")), adapter_name=name)
        bad = [k for k in result.unexpected_keys if "lora_" in k]
        if bad:
            raise ValueError(f"{sub}: stored adapter '{name}' does not fit the model (unexpected keys, e.g. {bad[:3]})")
        for pname, p in model.named_parameters():
            if f".{name}." in pname:
                p.requires_grad_(False)
        found.append(name)
    return found
