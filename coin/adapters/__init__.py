"""Parameter-efficient adapters, one file each, registered by name (``adapter.type`` in the config).

An adapter is a class registered in ``ADAPTERS`` (``coin.adapters.base.Adapter``): its
``Options`` (keys it takes under ``adapter:`` beside r, alpha, dropout, train_projector),
``build`` (wrap the backbone's model), ``summary`` (one line for plans and reports) and
optionally ``check_section``. This module holds what every adapter shares: attaching one,
keeping trainable weights in fp32, loading saved weights. Importing it loads no torch or
PEFT (validating a config and listing adapters need neither); building an adapter does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import coin.adapters.lora  # noqa: F401  (registers "lora")
import coin.adapters.moelora  # noqa: F401  (registers "moelora")
from coin.adapters.base import ADAPTERS, Adapter, describe, parsed_section

if TYPE_CHECKING:
    from pathlib import Path

    from coin.config import AdapterConfig
    from coin.models.backbone import VLM


def attach_adapter(vlm: VLM, cfg: AdapterConfig) -> Any:
    """Wrap ``vlm.model`` with the adapter ``cfg.type`` (in place) and return the PEFT model.

    ``cfg`` is the ``adapter`` section (``coin.config_load.section("adapter", ...)`` builds one); a
    section built by hand has its own keys parsed and checked here. Every trainable parameter
    is then kept in fp32 (``fp32_trainable``).
    """
    cfg = parsed_section(cfg)
    vlm.model = ADAPTERS.get(cfg.type).build(vlm, cfg)
    fp32_trainable(vlm.model, vlm.full_train)
    return vlm.model


def fp32_trainable(model, full_train: list[str] | tuple[str, ...] = ()) -> int:
    """Cast every trainable parameter to fp32 (its master copy); returns how many were cast.

    PEFT upcasts LoRA weights but not ``modules_to_save``: with bf16 weights the projector and
    its AdamW state stayed bf16, and an update of 2e-5 on a weight of 0.02 is below bf16's
    resolution there (about 1e-4), so most entries never moved. Compute stays in bf16 under
    autocast. The fully trained modules (``full_train``, matched as a name suffix) of a model
    whose other weights are not fp32 get hooks that cast their floating inputs to fp32 and
    their output back to the input's dtype, so a forward without autocast (generation) runs;
    LoRA layers cast for themselves. An fp32 model is left exactly as it was.
    """
    import torch

    cast = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    if not any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        return cast
    matched = [(n, m) for n, m in model.named_modules() if any(n == t or n.endswith("." + t) for t in full_train)]
    for name, module in matched:
        if not any(name.startswith(outer + ".") for outer, _ in matched):  # the outermost match only
            module.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)
            module.register_forward_hook(_output_as_input, always_call=True)
    return cast


def _fp32(value):
    import torch

    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def _inputs_to_fp32(module, args, kwargs):
    import torch

    floats = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    module.__dict__.setdefault("_coin_input_dtypes", []).append(floats[0].dtype if floats else None)
    return tuple(_fp32(a) for a in args), {k: _fp32(v) for k, v in kwargs.items()}


def _output_as_input(module, args, output):
    import torch

    dtype = module.__dict__["_coin_input_dtypes"].pop()
    if dtype is not None and isinstance(output, torch.Tensor) and output.is_floating_point():
        return output.to(dtype)
    return output


def load_adapter(vlm: VLM, path: Path) -> Any:
    """Replace ``vlm.model``'s adapter weights with the ones saved in ``path`` (trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(vlm.model, state)
    bad = [k for k in result.unexpected_keys if "lora_" in k or "modules_to_save" in k]
    if bad:
        raise ValueError(f"{path}: adapter does not fit the model (unexpected keys, e.g. {bad[:3]})")
    if any((p / "adapter_model.safetensors").is_file() for p in path.iterdir()):
        from coin.adapters.bank import restore_saved

        restore_saved(vlm.model, path)  # the other named adapters save_pretrained wrote (an adapter bank's), frozen
    return vlm.model


def trainable_parameters(model) -> int:
    """How many weights of ``model`` train (the run's cost line)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["ADAPTERS", "Adapter", "attach_adapter", "describe", "fp32_trainable", "load_adapter", "parsed_section",
           "trainable_parameters"]
