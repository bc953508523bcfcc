"""Parameter-efficient adapters, registered by name (``adapter.type`` in the config)."""

from __future__ import annotations

from typing import Callable

from coin.registry import Registry

ADAPTERS: Registry[Callable] = Registry("adapter")


@ADAPTERS.register("lora")
def lora(vlm, cfg):
    """PEFT LoRA on every linear layer of the LM (not lm_head); the projector trained fully."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=vlm.lora_target,
        modules_to_save=list(vlm.full_train) if cfg.train_projector else None,
        bias="none",
    )
    return get_peft_model(vlm.model, config)


def attach_adapter(vlm, cfg):
    """Wrap ``vlm.model`` with the adapter ``cfg.type`` (in place) and return the PEFT model.

    Every trainable parameter is then kept in fp32 (``fp32_trainable``).
    """
    vlm.model = ADAPTERS.get(cfg.type)(vlm, cfg)
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


def load_adapter(vlm, path):
    """Replace ``vlm.model``'s adapter weights with the ones saved in ``path`` (trainable)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(vlm.model, state)
    bad = [k for k in result.unexpected_keys if "lora_" in k or "modules_to_save" in k]
    if bad:
        raise ValueError(f"{path}: adapter does not fit the model (unexpected keys, e.g. {bad[:3]})")
    return vlm.model


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@ADAPTERS.register("moelora")
def moelora(vlm, cfg):
    """MoELoRA (coin.adapters.moelora): ``adapter.experts`` gated experts fused into one LoRA's matmuls."""
    from coin.adapters.moelora import build_moelora  # imports peft only when used

    return build_moelora(vlm, cfg)
