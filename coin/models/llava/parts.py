"""CoIN's starting point: the pretrain-only LLaVA-1.5, assembled from its three released parts.

LLaVA-1.5's stage 1 (feature alignment) trains only the projector, and its authors release it
alone (``mm_projector.bin``) next to the two frozen parts it joins: a Vicuna LM folder and a
CLIP vision folder (clip-vit-large-patch14-336). ``assemble_llava`` builds from them a llava-hf
``LlavaForConditionalGeneration`` and its ``LlavaProcessor``, with LLaVA-1.5's settings (second
to last CLIP layer, CLS dropped, ``mlp2x_gelu`` projector, 576 image tokens at 336/14), so every
other part of coin uses it exactly like a llava-hf checkpoint.

Nothing is left random: the model is built on the meta device and every parameter and buffer
is then taken from a part (an unmatched one is an error). The only new weights are the rows of
the tokens llava-hf adds, ``<image>`` (and ``<pad>`` when the LM has no pad token); they are set
to the mean of the existing rows (input embeddings and lm_head alike), as LLaVA's own
``smart_tokenizer_and_embedding_resize`` does: deterministic, and harmless, because no input
row is ever read (``<image>`` positions are overwritten by image features, ``<pad>`` ones are
masked) and a mean output row scores the mean logit, so greedy decoding never picks it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
from itertools import chain
from pathlib import Path

import torch
from torch import nn

from coin.errors import MissingPartError, PartsError  # re-exported: their home was here
from coin.models.load_parts import check_folder as _check_folder, load_part as _load_part

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
# LLaVA's names for the two linear layers of its mlp2x_gelu projector -> llava-hf's
_PROJECTOR_KEYS = {"0.weight": "linear_1.weight", "0.bias": "linear_1.bias",
                   "2.weight": "linear_2.weight", "2.bias": "linear_2.bias"}
_PROJECTOR_PREFIXES = ("model.mm_projector.", "mm_projector.", "")


# ---------------------------------------------------------------------------- the projector
def load_projector(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The projector file's tensors: a torch state dict (loaded weights-only) or a .safetensors file.

    ``weights_only`` refuses any pickled object other than tensors and plain containers, so a
    tampered ``.bin`` cannot run code while it loads.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingPartError(f"projector file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise PartsError(f"projector file {path} is not a readable safetensors file ({e})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            reason = next((line.strip() for line in str(e).splitlines() if "global" in line.lower()), "")
            raise PartsError(
                f"projector file {path} was refused by weights-only loading: it holds pickled objects other "
                f"than tensors, which could run code when loaded{f' ({reason})' if reason else ''}. "
                "Expected a plain state dict of tensors, as LLaVA's mm_projector.bin is") from None
        except Exception as e:
            raise PartsError(f"projector file {path} cannot be read as a torch state dict ({e})") from None
    if not isinstance(state, dict):
        raise PartsError(f"projector file {path} holds a {type(state).__name__}, not a state dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise PartsError(f"projector file {path}: key {bad[0]!r} holds a {type(state[bad[0]]).__name__}, "
                         "not a tensor")
    return state


def map_projector(state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict[str, tuple[str, torch.Tensor]]:
    """llava-hf's projector names (``linear_1.weight``) -> (the file's key, its tensor), from LLaVA's
    keys (``model.mm_projector.0.weight``, ``mm_projector.0.weight`` or bare ``0.weight``); every
    unknown, duplicate or missing key is reported."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    problems = []
    prefix = None
    for key, tensor in state.items():
        match = next((p for p in _PROJECTOR_PREFIXES if key.startswith(p) and key[len(p):] in _PROJECTOR_KEYS), None)
        if match is None:
            problems.append(f"unexpected key {key!r}")
            continue
        prefix = match if prefix is None else prefix
        target = _PROJECTOR_KEYS[key[len(match):]]
        if target in out:
            problems.append(f"keys {out[target][0]!r} and {key!r} are the same projector weight")
            continue
        out[target] = (key, tensor)
    for name, target in _PROJECTOR_KEYS.items():
        if target not in out:
            problems.append(f"missing key {(prefix or _PROJECTOR_PREFIXES[0]) + name!r}")
    if problems:
        raise PartsError(
            f"projector file {path}: " + "; ".join(problems) + ". LLaVA-1.5's mlp2x_gelu projector has exactly "
            + ", ".join(_PROJECTOR_PREFIXES[0] + k for k in _PROJECTOR_KEYS)
            + " (the prefixes 'mm_projector.' and none are accepted too)")
    return out


# ---------------------------------------------------------------------------- the two folders
def _vision_config_type(path: Path) -> str:
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as e:
        raise PartsError(f"vision folder {path}: config.json cannot be read ({e})") from None
    if model_type not in ("clip", "clip_vision_model"):
        raise PartsError(f"vision folder {path}: config.json has model_type {model_type!r}; "
                         "a CLIP vision tower ('clip' or 'clip_vision_model') is expected")
    return model_type


# ---------------------------------------------------------------------------- assembly
def _tensors(module: nn.Module):
    return chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))


def _assign(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, attr = name.rpartition(".")
    module = model.get_submodule(owner)
    if attr in module._parameters:
        if not isinstance(value, nn.Parameter):
            value = nn.Parameter(value, requires_grad=value.is_floating_point())
        module._parameters[attr] = value
    else:
        module._buffers[attr] = value


def _mean_init(weight: torch.Tensor, old: int) -> None:
    with torch.no_grad():
        weight[old:] = weight[:old].float().mean(0, keepdim=True).to(weight.dtype)


def assemble_llava(lm_path, vision_path, projector_path, dtype: str | torch.dtype = "auto",
                   trust_remote_code: bool = False, attn_implementation: str | None = None, log=print):
    """(``LlavaForConditionalGeneration``, ``LlavaProcessor``) of LLaVA-1.5 from its three parts.

    ``lm_path``: a causal-LM folder with its tokenizer (Vicuna-7B/13B v1.5); ``vision_path``: a
    CLIP folder (a ``CLIPModel`` or ``CLIPVisionModel`` checkpoint, with preprocessor_config.json);
    ``projector_path``: LLaVA's stage-1 ``mm_projector.bin`` (or a .safetensors). ``dtype``: a torch
    dtype or coin's name for one ("auto", "fp32", "bf16", "fp16").
    """
    from transformers import (AutoConfig, AutoImageProcessor, AutoModelForCausalLM, CLIPVisionConfig,
                              CLIPVisionModel, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

    from coin.models.backbone import torch_dtype
    from coin.models.conversation import VICUNA_V1_TEMPLATE as CHAT_TEMPLATE
    from coin.models.tokenizer_check import load_tokenizer

    dtype = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    lm_dir = _check_folder(lm_path, "LM", ("config.json",))
    vision_dir = _check_folder(vision_path, "vision", ("config.json", "preprocessor_config.json"))
    if projector_path is None:
        raise MissingPartError("no projector file given")
    _vision_config_type(vision_dir)
    projector = map_projector(load_projector(projector_path), projector_path)

    # the model's skeleton first, from the parts' configs, so that a projector of the wrong
    # shape is refused before gigabytes of weights load
    tcfg = AutoConfig.from_pretrained(str(lm_dir), trust_remote_code=trust_remote_code)
    vcfg = CLIPVisionConfig.from_pretrained(str(vision_dir))
    tokenizer = load_tokenizer(lm_dir, trust_remote_code=trust_remote_code,
                               image_token=IMAGE_TOKEN)  # adds <image> as a special token
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = AutoImageProcessor.from_pretrained(str(vision_dir))
    crop = getattr(image_processor, "crop_size", None)
    side = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None)
    if side not in (None, vcfg.image_size):
        raise PartsError(f"vision folder {vision_dir}: preprocessor_config.json crops images to {side} pixels "
                         f"but config.json has image_size {vcfg.image_size}")
    config = LlavaConfig(
        vision_config=copy.deepcopy(vcfg),
        text_config=copy.deepcopy(tcfg),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2,
        vision_feature_layer=-2,  # LLaVA-1.5: the second to last CLIP layer ...
        vision_feature_select_strategy="default",  # ... without its CLS token
        projector_hidden_act="gelu",  # mlp2x_gelu
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(tcfg, "tie_word_embeddings", False)),
    )
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with torch.device("meta"):  # no memory, no random init: every tensor comes from a part below
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, **extra)
    slots = dict(_tensors(model))
    problems = []
    for name, (key, t) in projector.items():
        want = slots["model.multi_modal_projector." + name].shape
        if t.shape != want:
            problems.append(f"{key!r} has shape {tuple(t.shape)}, expected {tuple(want)}")
    if problems:
        raise PartsError(f"projector file {projector_path}: " + "; ".join(problems) + f". The projector maps the "
                         f"vision hidden size {vcfg.hidden_size} ({vision_dir}) to the LM hidden size "
                         f"{tcfg.hidden_size} ({lm_dir})")

    log(f"assembling LLaVA-1.5: LM {lm_dir}, vision tower {vision_dir}, projector {projector_path}")
    lm = _load_part(AutoModelForCausalLM, lm_dir, "LM", dtype=dtype, trust_remote_code=trust_remote_code)
    vision = _load_part(CLIPVisionModel, vision_dir, "vision", dtype=dtype)
    # where each tensor of the assembled model comes from: name -> (tensor, part, the part's key)
    sources: dict[str, tuple[torch.Tensor, str, str]] = {}
    head = next(n for n, m in lm.named_modules() if m is lm.get_output_embeddings())
    base = lm.base_model_prefix
    for name, t in _tensors(lm):
        if name.startswith(base + "."):
            sources["model.language_model." + name[len(base) + 1:]] = (t, f"LM folder {lm_dir}", name)
        elif name.startswith(head + "."):
            sources["lm_head." + name[len(head) + 1:]] = (t, f"LM folder {lm_dir}", name)
    for name, t in _tensors(vision):
        sources["model.vision_tower." + name] = (t, f"vision folder {vision_dir}", name)
    for name, (key, t) in projector.items():
        sources["model.multi_modal_projector." + name] = (t.to(dtype), f"projector file {projector_path}", key)
    for name, slot in slots.items():
        if name not in sources:
            problems.append(f"{name} has no source among the parts")
            continue
        t, where, key = sources.pop(name)
        if t.shape != slot.shape:
            problems.append(f"{where}: {key!r} has shape {tuple(t.shape)}, expected {tuple(slot.shape)}")
            continue
        _assign(model, name, t)
    problems += [f"{where}: {key!r} has no place in LLaVA" for _, where, key in sources.values()]
    problems = problems or [f"{n} was not loaded" for n, t in _tensors(model) if t.is_meta]
    if problems:
        raise PartsError("cannot assemble LLaVA-1.5:\n  - " + "\n  - ".join(problems))
    del lm, vision, sources

    old = model.get_input_embeddings().weight.shape[0]
    new = max(old, len(tokenizer))
    if new > old:
        model.resize_token_embeddings(new, mean_resizing=False)
        _mean_init(model.get_input_embeddings().weight, old)
        if not config.tie_word_embeddings:
            _mean_init(model.get_output_embeddings().weight, old)
        log(f"embeddings resized {old} -> {new} (new rows for {IMAGE_TOKEN}"
            f"{' and ' + PAD_TOKEN if tokenizer.pad_token == PAD_TOKEN else ''}: the mean of the others)")
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, attr, getattr(tokenizer, attr))
    model.eval()

    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vcfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped again by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def assemble_to_folder(lm_path, vision_path, projector_path, out, dtype: str | torch.dtype = "fp16",
                       trust_remote_code: bool = False, log=print) -> Path:
    """Assemble LLaVA-1.5 and write it as a llava-hf folder (safetensors, processor, tokenizer)
    that model.name ``llava`` loads; written beside ``out`` first, then renamed into place."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PartsError(f"{out} already exists and is not empty; choose another --out")
    model, processor = assemble_llava(lm_path, vision_path, projector_path, dtype=dtype,
                                      trust_remote_code=trust_remote_code, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    digest = hashlib.sha256(Path(projector_path).read_bytes()).hexdigest()
    (tmp / "assembled_from.json").write_text(json.dumps({
        "lm": str(lm_path), "vision": str(vision_path), "projector": str(projector_path),
        "projector_sha256": digest, "dtype": str(model.dtype).removeprefix("torch."),
        "new_token_rows": "mean of the existing rows",
    }, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    return out
