"""The sizes coin's memory estimate needs, read from a model's folders before anything loads.

``sizes_for(cfg.model)`` builds an ``Arch`` (a Llama-style LM; a CLIP-style vision tower with
LLaVA's projector, or Qwen2-VL's / Qwen2.5-VL's tower with its merger) from the architecture as
transformers resolves it (``AutoConfig``, local files only, defaults filled: llava-hf's partial
``text_config``, Qwen2-VL's flat config), or says in one line why it cannot: a hub id (the
config.json is needed), a placeholder folder, an architecture it does not know. The estimate
itself (``coin.engine.memory``) is arithmetic over these sizes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QWEN_MAX_PIXELS = 1280 * 28 * 28  # the Qwen2-VL image processor's default max_pixels (coin's model.max_pixels too)
KNOWN = {"llava": "LLaVA", "qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL"}  # config.json model types
KNOWN_TEXT = ("LLaVA: model_type llava (llava, hf) or llava-pretrain's Vicuna + CLIP folders; Qwen2-VL / "
              "Qwen2.5-VL: qwen2_vl / qwen2_5_vl (qwen2-vl, hf)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name (as coin.engine.plan tells one)


@dataclass(frozen=True)
class Arch:
    """The sizes the estimate needs: a Llama-style LM; a CLIP-style vision tower with LLaVA's projector, or
    Qwen2-VL's / Qwen2.5-VL's tower with its merger (``vision``)."""

    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    vision_width: int
    vision_ffn: int
    vision_layers: int
    image_size: int
    patch: int
    tied: bool = False
    image_tokens: int | None = None  # default: (image_size / (patch x merge))^2
    vision: str = "clip"  # "clip" (CLIP ViT + LLaVA's MLP projector), "qwen2_vl", "qwen2_5_vl"
    merge: int = 1  # Qwen's spatial merge: merge x merge patches make one image token
    temporal_patch: int = 1  # Qwen's patch embedding spans this many frames (an image is repeated)
    qkv_bias: bool = False  # q, k and v projections with biases (Qwen2)

    @property
    def tokens_per_image(self) -> int:
        if self.image_tokens is not None:
            return self.image_tokens
        return (self.image_size // (self.patch * self.merge)) ** 2

    @property
    def kv(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def block_params(self) -> int:
        h, f, kv = self.hidden, self.ffn, self.kv
        return 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h + ((h + 2 * kv) if self.qkv_bias else 0)

    def lm_params(self) -> int:
        return self.layers * self.block_params() + self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def vision_params(self) -> int:
        w, m = self.vision_width, self.vision_ffn
        if self.vision == "clip":
            n = self.tokens_per_image
            layer = 4 * (w * w + w) + 2 * w * m + w + m + 4 * w
            return self.vision_layers * layer + 3 * self.patch**2 * w + (n + 2) * w + 4 * w
        patch = 3 * self.temporal_patch * self.patch**2 * w  # a Conv3d without bias; rotary positions
        if self.vision == "qwen2_5_vl":  # two RMSNorms, a gated MLP with biases
            layer = 4 * (w * w + w) + 3 * w * m + 2 * m + w + 2 * w
        else:  # two LayerNorms, fc1 and fc2
            layer = 4 * (w * w + w) + 2 * w * m + w + m + 4 * w
        return self.vision_layers * layer + patch

    def projector_params(self) -> int:
        w, h = self.vision_width, self.hidden
        if self.vision == "clip":
            return w * h + h + h * h + h
        c = self.merge**2 * w  # Qwen's merger: a norm over each patch, an MLP over merge^2 patches
        return (w if self.vision == "qwen2_5_vl" else 2 * w) + c * c + c + c * h + h

    def projector_activations(self) -> int:
        """Values per image token the trained projector keeps for backward."""
        if self.vision == "clip":
            return self.vision_width + 2 * self.hidden  # fc1's input, fc2's input and the activation's
        return 4 * self.merge**2 * self.vision_width  # the norm's input and output, fc1's output, the GELU's

    def adapter_params(self, r: int, experts: int = 1) -> int:
        """LoRA (or MoELoRA: ``experts`` > 1 adds the gates) on the seven linear layers of every block."""
        h, f, kv = self.hidden, self.ffn, self.kv
        lora = r * (2 * (h + h) + 2 * (h + kv) + 2 * (h + f) + (f + h))
        gates = experts * (6 * h + f) if experts > 1 else 0
        return self.layers * (lora + gates)


def arch_from_config(config: Any, *, image_tokens: int | None = None) -> Arch | None:
    """An ``Arch`` from a transformers config, or None for an architecture the estimate does not know (or
    a config without the sizes).

    ``config``: a ``PretrainedConfig`` as transformers resolves it (defaults filled; ``resolved``), or a
    ``config.json``'s dict: LLaVA-style (``text_config`` + a CLIP-style ``vision_config``), Qwen2-VL (the
    text sizes at the top level or in ``text_config``; ``vision_config`` with ``embed_dim``, ``depth``,
    ``mlp_ratio``, ``spatial_merge_size``) or Qwen2.5-VL (``vision_config`` with ``out_hidden_size``).
    ``image_tokens``: the LM tokens of one image where the image size sets them (Qwen's); default for
    Qwen: the most ``QWEN_MAX_PIXELS`` gives."""
    if not isinstance(config, dict):
        config = resolved(config)
    text, vision = config.get("text_config"), config.get("vision_config")
    if not isinstance(vision, dict):
        return None
    if not isinstance(text, dict):  # Qwen2-VL's config.json: the text sizes at the top level
        text = config
    kind = _vision_kind(config, vision)
    try:
        heads = int(text["num_attention_heads"])
        lm = dict(hidden=int(text["hidden_size"]), ffn=int(text["intermediate_size"]),
                  layers=int(text["num_hidden_layers"]), heads=heads,
                  kv_heads=int(text.get("num_key_value_heads") or heads), vocab=int(text["vocab_size"]),
                  tied=bool(config["tie_word_embeddings"] if "tie_word_embeddings" in config
                            else text.get("tie_word_embeddings", False)),
                  qkv_bias=kind != "clip" or bool(text.get("attention_bias", False)))
        if kind == "clip":
            return Arch(**lm, vision_width=int(vision["hidden_size"]), vision_ffn=int(vision["intermediate_size"]),
                        vision_layers=int(vision["num_hidden_layers"]), image_size=int(vision["image_size"]),
                        patch=int(vision["patch_size"]))
        if kind == "qwen2_vl":
            width = int(vision["embed_dim"])
            tower = dict(vision_width=width, vision_ffn=int(width * float(vision.get("mlp_ratio", 4))))
        else:
            tower = dict(vision_width=int(vision["hidden_size"]), vision_ffn=int(vision["intermediate_size"]))
        patch, merge = _int(vision["patch_size"]), int(vision.get("spatial_merge_size", 2))
        if image_tokens is None:
            image_tokens = QWEN_MAX_PIXELS // (patch * merge) ** 2
        image_tokens = max(image_tokens, 1)
        return Arch(**lm, **tower, vision_layers=int(vision["depth"]), patch=patch, merge=merge,
                    image_size=math.isqrt(image_tokens) * patch * merge, image_tokens=image_tokens,
                    temporal_patch=_int(vision.get("temporal_patch_size", 2)), vision=kind)
    except (KeyError, TypeError, ValueError):
        return None


def _int(v: Any) -> int:
    """A size transformers may write as one number or a pair (``patch_size: [14, 14]``)."""
    return int(v[0] if isinstance(v, (list, tuple)) else v)


def _vision_kind(config: dict, vision: dict) -> str:
    """``clip`` (a CLIP-style ViT and LLaVA's projector), ``qwen2_vl`` or ``qwen2_5_vl`` (their towers and merger)."""
    types = {str(config.get("model_type") or ""), str(vision.get("model_type") or "")}
    if any(t.startswith("qwen2_5_vl") for t in types) or "out_hidden_size" in vision:
        return "qwen2_5_vl"
    if any(t.startswith("qwen2_vl") for t in types) or ("embed_dim" in vision and "depth" in vision):
        return "qwen2_vl"
    return "clip"


def resolved(config: Any) -> dict:
    """A transformers ``PretrainedConfig`` as a dict the estimate reads: its own keys, its text config
    (``get_text_config``: the LM's, defaults filled) as ``text_config`` and its ``vision_config``."""
    out = config.to_dict()
    getter = getattr(config, "get_text_config", None)
    text = getter(decoder=True) if getter is not None else config
    out["text_config"] = text.to_dict()
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        out["vision_config"] = vision.to_dict() if hasattr(vision, "to_dict") else dict(vision)
    return out


@dataclass(frozen=True)
class Sizes:
    """What the dry run's memory plan rests on: the architecture and where each assumption came from."""

    arch: Arch
    source: str  # the config file(s) and how they were read
    image: str  # the image tokens' assumption
    max_length: int | None  # the longest training sequence (model.max_length or the backbone's own)
    max_length_from: str


def _hub_line(model_id: str) -> str:
    folder = f"checkpoints/{model_id.rsplit('/', 1)[-1]}"
    return (f"memory plan: needs the model's config.json; run with a local folder or fetch it first: "
            f"huggingface-cli download {model_id} config.json preprocessor_config.json tokenizer_config.json "
            f"--local-dir {folder}, then --set model.path={folder} (model.path {model_id} is a hub id; a dry run "
            "fetches nothing)")


def _read_json(file: Path) -> dict | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _resolve(folder: Path, raw: dict, trust_remote_code: bool) -> tuple[dict, str]:
    """``folder``'s config as ``transformers.AutoConfig`` resolves it (a partial ``text_config`` gets its
    model type's defaults; local files only, nothing fetched), and how it was read; its ``config.json`` as
    written when transformers cannot resolve it."""
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code, local_files_only=True)
        return resolved(config), "as transformers resolves it"
    except Exception as e:  # noqa: BLE001 - an unknown model type, a field transformers refuses: read as written
        return raw, f"as written (transformers could not resolve it: {type(e).__name__})"


def _max_pixels(model_cfg: Any, folder: Path | None) -> tuple[int, str]:
    """The most pixels a Qwen2-VL-style processor resizes an image to, and where that came from."""
    own = getattr(model_cfg.options, "max_pixels", None)
    if own:
        return int(own), "model.max_pixels"
    pre = _read_json(folder / "preprocessor_config.json") if folder is not None else None
    if pre is not None:
        size = pre.get("size") if isinstance(pre.get("size"), dict) else {}
        for value in (pre.get("max_pixels"), size.get("longest_edge")):
            if isinstance(value, int) and value > 0:
                return value, f"{folder / 'preprocessor_config.json'}'s max_pixels"
    return QWEN_MAX_PIXELS, "the Qwen2-VL processor's default"


def _max_length(model_cfg: Any, folder: Path | None) -> tuple[int | None, str]:
    """The training sequence limit the run will use (``coin.models.sequences.resolve_max_length``), and its origin."""
    if model_cfg.max_length is not None:
        return int(model_cfg.max_length), "model.max_length"
    from coin.models import BACKBONES

    default = getattr(BACKBONES.get(model_cfg.name), "default_max_length", None)
    if default is not None:
        return int(default), f"{model_cfg.name}'s default, model.max_length unset"
    tok = _read_json(folder / "tokenizer_config.json") if folder is not None else None
    limit = tok.get("model_max_length") if tok is not None else None
    if isinstance(limit, int) and 0 < limit < 10**7:
        return limit, "the tokenizer's model_max_length, model.max_length unset"
    return None, "model.max_length unset and no tokenizer limit found"


def _image_line(arch: Arch, pixels: tuple[int, str] | None) -> str:
    n = arch.tokens_per_image
    if arch.vision == "clip":
        return (f"{n} per image (the {arch.image_size} px image in {arch.patch} px patches"
                f"{'' if arch.image_tokens is None else ', as configured'})")
    px, where = pixels if pixels is not None else (QWEN_MAX_PIXELS, "the Qwen2-VL processor's default")
    f = arch.patch * arch.merge
    return (f"at most {n} per image ({px} pixels, {where}, / ({arch.patch} x {arch.merge})^2 = {f}x{f} per "
            f"token; a smaller image gets fewer)")


def sizes_for(model_cfg: Any) -> tuple[Sizes | None, str]:
    """The sizes of the configured backbone, from its own (the tiny model's) or from the ``config.json`` of its
    local folder(s) as transformers resolves it (nothing else is read, nothing fetched); else None and the
    dry run's line saying why there is no estimate."""
    from coin.models import BACKBONES
    from coin.models.backbone import parsed_section

    name = model_cfg.name
    own = BACKBONES.get(name).size_config(model_cfg)  # a backbone that knows its sizes without a folder
    if own is not None:
        config, where = own
        arch = arch_from_config(config)
        if arch is None:
            return None, f"memory plan: no estimate ({where}: not the sizes of an architecture the estimate knows)"
        return Sizes(arch, where, _image_line(arch, None), *_max_length(model_cfg, None)), ""
    try:
        parsed = parsed_section(model_cfg)
        hub_keys = {w.key for w in BACKBONES.get(name).weights(parsed) if w.hub}  # may name a hub id
    except Exception:  # noqa: BLE001 - a section the config check reports itself
        parsed, hub_keys = model_cfg, set()
    opts = parsed.options
    lm, vision, path = (getattr(opts, k, None) for k in ("lm_path", "vision_path", "path"))
    if lm and vision:
        folders = [("model.lm_path", lm), ("model.vision_path", vision)]
    elif path:
        folders = [("model.path", path)]
    else:
        return None, (f"memory plan: no estimate for model.name {name!r}: it has no model.path (nor model.lm_path "
                      f"+ model.vision_path) whose config.json gives the sizes; the estimate knows {KNOWN_TEXT}")
    trust = bool(getattr(model_cfg, "trust_remote_code", False))
    configs, how = [], ""
    for key, value in folders:
        folder = Path(value).expanduser()
        file = folder / "config.json"
        if key in hub_keys and not folder.exists() and _HUB_ID.match(str(value)):
            return None, _hub_line(str(value))
        if not file.is_file():
            state = "is not there" if not folder.exists() else "has no config.json"
            return None, f"memory plan: no estimate: {file} not found ({key} {state}; the sizes are read from it)"
        raw = _read_json(file)
        if raw is None:
            return None, f"memory plan: no estimate: {file} is not valid JSON (an object)"
        model_type = raw.get("model_type")
        if key == "model.path" and model_type is not None and model_type not in KNOWN:
            archs = ", ".join(map(str, raw.get("architectures") or []))
            return None, (f"memory plan: no estimate: {file}: model_type {model_type!r}"
                          f"{f' ({archs})' if archs else ''} is not an architecture the estimate knows "
                          f"({KNOWN_TEXT})")
        config, how = _resolve(folder, raw, trust) if model_type is not None else (raw, "as written")
        configs.append(config)
    if len(configs) == 2:  # llava-pretrain: the LM's config and CLIP's
        text = configs[0].get("text_config", configs[0])
        config = {"text_config": text, "vision_config": configs[1].get("vision_config", configs[1])}
    else:
        config = configs[0]
    where = " + ".join(str(Path(v).expanduser() / "config.json") for _, v in folders)
    folder = Path(folders[0][1]).expanduser()
    pixels = None
    arch = arch_from_config(config)
    if arch is not None and arch.vision != "clip":
        pixels = _max_pixels(model_cfg, folder)
        arch = arch_from_config(config, image_tokens=pixels[0] // (arch.patch * arch.merge) ** 2)
    if arch is None:
        return None, (f"memory plan: no estimate: {where} does not give the sizes the estimate needs (a language "
                      f"model's and its vision tower's: {KNOWN_TEXT})")
    return Sizes(arch, f"{where} ({how})", _image_line(arch, pixels), *_max_length(model_cfg, folder)), ""


def arch_for(model_cfg: Any) -> tuple[Arch | None, str]:
    """The configured backbone's architecture (``sizes_for``) and where its sizes came from, or why there is none."""
    sizes, why = sizes_for(model_cfg)
    return (sizes.arch, sizes.source) if sizes is not None else (None, why)
