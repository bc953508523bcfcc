"""MiniGPT-v2 assembled from its released files: EVA-CLIP ViT-g, the MiniGPT-v2 checkpoint, Llama-2-chat.

MiniGPT-v2 (Vision-CAIR) is an EVA-CLIP ViT-g/14 run at 448x448, a fresh ``ln_vision``
LayerNorm, the CLS token dropped, every four consecutive patch tokens concatenated (1024
tokens of 1408 -> 256 of 5632), ``llama_proj`` (Linear 5632 -> 4096) into Llama-2-7B-chat,
with LoRA on the LM's q and v projections. Its authors release three pieces, read here:

- ``eva_vit_g.pth``: the ViT's plain state dict (40 blocks; MiniGPT-v2 builds 39 and loads
  the file non-strictly, so the last block is dropped), its ``pos_embed`` for a 16x16 grid,
  resized to the 32x32 grid of 448 pixels in fp32, bicubic, ``align_corners=False``;
- the MiniGPT-v2 checkpoint: a dict whose ``model`` entry holds only the weights it trained
  (``llama_proj.*`` and the LoRA pairs, keyed
  ``llama_model.base_model.model.model.layers.N.self_attn.{q,v}_proj.lora_{A,B}[.default].weight``:
  both PEFT spellings are accepted, since the suffix could not be confirmed from the code);
- a local Llama-2-7B-chat folder (``LlamaForCausalLM`` and its tokenizer).

The two ``.pth`` files are read with ``torch.load(weights_only=True)`` (a ``.safetensors``
file with the same keys is accepted too), and every tensor is accounted for: each key is used,
or dropped by design and named in the log (the ViT's blocks past ``depth``, a head or final
norm the file may carry), and any other key, a missing one or a wrong shape is an error naming
the file and the key. The released LoRA is merged into the LM at its own scale (alpha 16 over
r 64, as released), so the loaded model is MiniGPT-v2 as its authors evaluate it; the run's
adapter (``adapter:``) then trains on top of it. ``ln_vision`` is not in the checkpoint (it is
frozen and never trained), so it is built as a fresh LayerNorm (weight 1, bias 0), unless the
checkpoint holds it.

The ViT is a small module of our own whose parameter names are the file's, key for key
(timm's ``Eva`` would also hold them, but timm needs torchvision, which this project does not).
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from coin.errors import MissingPartError, PartsError
from coin.models.load_parts import check_folder as _check_folder, load_part as _load_part

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENS_MERGED = 4  # consecutive patch tokens concatenated into one LM token
# the checkpoint's LoRA keys, with or without PEFT's adapter name ".default"
_LORA_KEY = re.compile(r"llama_model\.base_model\.model\.model\.layers\.(\d+)\.self_attn\.(q_proj|v_proj)"
                       r"\.lora_(A|B)(\.default)?\.weight")
_UNUSED_VIT = re.compile(r"(norm|fc_norm|head)\.(weight|bias)")  # in some EVA exports; MiniGPT-v2 never uses them


# ---------------------------------------------------------------------------- the vision tower
class EvaAttention(nn.Module):
    """EVA's attention: one qkv matrix without bias, then learned q and v biases (k's bias is zero)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class EvaMlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EvaBlock(nn.Module):
    """Pre-norm block (LayerNorm eps 1e-6), no layer scale."""

    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = EvaAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = EvaMlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EvaViT(nn.Module):
    """EVA-CLIP's ViT as MiniGPT-v2 runs it: every token of the last block (CLS first), no final norm."""

    def __init__(self, width: int, depth: int, heads: int, hidden: int, patch: int, image_size: int) -> None:
        super().__init__()
        self.patch, self.image_size = patch, image_size
        grid = image_size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
        self.patch_embed = PatchEmbed(width, patch)
        self.blocks = nn.ModuleList(EvaBlock(width, heads, hidden) for _ in range(depth))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


def resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """The CLS row kept, the patch rows resized to ``grid`` x ``grid`` (fp32, bicubic, no corner alignment)."""
    old = int(math.isqrt(pos.shape[1] - 1))
    if old == grid:
        return pos
    cls, rows = pos[:, :1], pos[:, 1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    rows = F.interpolate(rows, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, rows.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)], dim=1)


# ---------------------------------------------------------------------------- the model
class MiniGPTv2(nn.Module):
    """``visual_encoder`` -> ``ln_vision`` -> CLS dropped, 4 tokens concatenated -> ``llama_proj`` -> ``llama_model``.

    The top-level names are MiniGPT-v2's, so the checkpoint's keys address them directly. The
    forward takes ``pixel_values`` and an ``image_mask`` marking where in ``input_ids`` the image's
    LM tokens go (their ids are ignored); without pixels (a decoding step) it is the LM alone.
    ``config`` is the LM's (the KV cache and PEFT read it).
    """

    def __init__(self, visual_encoder: EvaViT, llama_model: nn.Module) -> None:
        super().__init__()
        width = visual_encoder.cls_token.shape[-1]
        self.visual_encoder = visual_encoder
        self.ln_vision = nn.LayerNorm(width)  # eps 1e-5; weight 1, bias 0 until a checkpoint says otherwise
        self.llama_proj = nn.Linear(TOKENS_MERGED * width, llama_model.config.hidden_size)
        self.llama_model = llama_model
        self.config = llama_model.config

    @property
    def image_tokens(self) -> int:
        """LM tokens per image (256 at 448 pixels, patch 14)."""
        return (self.visual_encoder.image_size // self.visual_encoder.patch) ** 2 // TOKENS_MERGED

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, image_tokens, LM width): the features the LM reads in place of the image's tokens."""
        tower = self.visual_encoder
        x = tower(pixels.to(tower.cls_token.dtype))
        ln = self.ln_vision  # computed in fp32, as MiniGPT-v2's LayerNorm does
        x = F.layer_norm(x.float(), ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps).to(x.dtype)
        x = x[:, 1:]
        b, n, c = x.shape
        return self.llama_proj(x.reshape(b, n // TOKENS_MERGED, c * TOKENS_MERGED))

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, image_mask=None, labels=None,
                **kwargs):
        embeds = self.llama_model.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            feats = self.encode_images(pixel_values).to(embeds.dtype)
            mask = image_mask.to(embeds.device).bool()
            if int(mask.sum()) != feats.shape[0] * feats.shape[1]:
                raise ValueError(f"image_mask marks {int(mask.sum())} positions for {feats.shape[0]} image(s) of "
                                 f"{feats.shape[1]} tokens each")
            embeds = embeds.masked_scatter(mask[..., None], feats.reshape(-1, feats.shape[-1]))
        return self.llama_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **kwargs)

    # what coin.models.backbone.load_model calls for model.gradient_checkpointing
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs) -> None:
        lm = self.llama_model
        if hasattr(lm, "activation_checkpointing_enable"):  # transformers' current name
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs=activation_checkpointing_kwargs, **kwargs)
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=activation_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs) -> None:
        """The old name, for callers that still use it (without transformers' deprecation warning)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def enable_input_require_grads(self) -> None:
        self.llama_model.enable_input_require_grads()


# ---------------------------------------------------------------------------- reading the files
def read_state(path: str | os.PathLike, what: str) -> dict:
    """A ``.pth`` file read weights-only (tensors and plain containers), or a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise MissingPartError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise PartsError(f"{what} {path} is not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = next((line.strip() for line in str(e).splitlines() if "global" in line.lower()), "")
        raise PartsError(f"{what} {path} was refused by weights-only loading: it holds pickled objects other than "
                         f"tensors and plain containers, which could run code when loaded"
                         f"{f' ({reason})' if reason else ''}") from None
    except Exception as e:
        raise PartsError(f"{what} {path} cannot be read as a torch file ({e})") from None
    if not isinstance(state, dict):
        raise PartsError(f"{what} {path} holds a {type(state).__name__}, not a dict of tensors")
    return state


def checkpoint_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The trained weights of a MiniGPT-v2 checkpoint: its ``model`` entry (a ``.safetensors``: the file itself)."""
    state = read_state(path, "MiniGPT-v2 checkpoint")
    if Path(path).suffix != ".safetensors":
        if "model" not in state or not isinstance(state["model"], dict):
            raise PartsError(f"MiniGPT-v2 checkpoint {path} has no 'model' entry holding the trained weights "
                             f"(its keys: {', '.join(sorted(map(str, state))[:8])})")
        state = state["model"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise PartsError(f"MiniGPT-v2 checkpoint {path}: key {bad[0]!r} holds a {type(state[bad[0]]).__name__}, "
                         "not a tensor")
    return state


def build_vit(state: dict, path, depth: int, heads: int, image_size: int) -> tuple[EvaViT, list[str]]:
    """The ViT from its file's tensors (sizes read from them); returns it and the keys dropped by design."""
    where = f"EVA ViT file {path}"
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise PartsError(f"{where}: missing key {key!r} (is it EVA-CLIP's eva_vit_g.pth?)")
    width, patch = state["cls_token"].shape[-1], state["patch_embed.proj.weight"].shape[-1]
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    if width % heads:
        raise PartsError(f"{where}: width {width} is not divisible by model.vit_heads {heads}")
    if image_size % patch:
        raise PartsError(f"model.image_size {image_size} is not a multiple of the ViT's patch {patch} ({where})")
    grid = image_size // patch
    if (grid * grid) % TOKENS_MERGED:
        raise PartsError(f"model.image_size {image_size} gives {grid * grid} patches, not a multiple of "
                         f"{TOKENS_MERGED}")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if max(blocks, default=-1) + 1 < depth:
        raise PartsError(f"{where} has {max(blocks, default=-1) + 1} blocks; model.vit_depth asks for {depth}")
    with torch.device("meta"):
        vit = EvaViT(width, depth, heads, hidden, patch, image_size)
    wanted = dict(vit.state_dict())
    dropped, problems, tensors = [], [], {}
    for key, t in state.items():
        m = re.match(r"blocks\.(\d+)\.", key)
        if key not in wanted:
            if (m and int(m.group(1)) >= depth) or _UNUSED_VIT.fullmatch(key):
                dropped.append(key)
            else:
                problems.append(f"unexpected key {key!r}")
            continue
        if key == "pos_embed" and t.shape[1] != wanted[key].shape[1]:
            if math.isqrt(t.shape[1] - 1) ** 2 != t.shape[1] - 1:
                problems.append(f"'pos_embed' has {t.shape[1]} rows, not a square grid plus CLS")
                continue
            t = resize_pos_embed(t, grid)
        if tuple(t.shape) != tuple(wanted[key].shape):
            problems.append(f"{key!r} has shape {tuple(t.shape)}, expected {tuple(wanted[key].shape)}")
            continue
        tensors[key] = t
    problems += [f"missing key {k!r}" for k in wanted if k not in tensors and k not in state]
    if problems:
        raise PartsError(f"{where}: " + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    vit.load_state_dict(tensors, assign=True)
    return vit, dropped


def split_checkpoint(state: dict, path) -> tuple[dict, dict[tuple[int, str], dict[str, torch.Tensor]], str]:
    """The checkpoint's own-module weights (``llama_proj``, ``ln_vision``), its LoRA pairs by (layer, q/v),
    and which LoRA key spelling it uses."""
    own, lora, spellings, problems = {}, {}, set(), []
    for key, t in state.items():
        if key in ("llama_proj.weight", "llama_proj.bias", "ln_vision.weight", "ln_vision.bias"):
            own[key] = t
        elif m := _LORA_KEY.fullmatch(key):
            lora.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = t
            spellings.add("lora_A.default.weight" if m.group(4) else "lora_A.weight")
        else:
            problems.append(f"unexpected key {key!r}")
    for (layer, proj), pair in sorted(lora.items()):
        if set(pair) != {"A", "B"}:
            problems.append(f"layer {layer} {proj} has lora_{next(iter(pair))} without its pair")
    for key in ("llama_proj.weight", "llama_proj.bias"):
        if key not in own:
            problems.append(f"missing key {key!r}")
    if len(spellings) > 1:
        problems.append("LoRA keys mix both PEFT spellings (with and without '.default')")
    if problems:
        raise PartsError(f"MiniGPT-v2 checkpoint {path}: " + "; ".join(problems[:10])
                         + (" ..." if len(problems) > 10 else "") + ". Expected llama_proj.{weight,bias}, "
                         "optionally ln_vision.{weight,bias}, and LoRA keys llama_model.base_model.model.model."
                         "layers.N.self_attn.{q,v}_proj.lora_{A,B}[.default].weight")
    return own, lora, next(iter(spellings), "none")


def merge_lora(lm: nn.Module, lora: dict, alpha: float, path) -> int:
    """Add ``alpha / r * B @ A`` to each adapted q/v weight (in fp32); returns the rank (0: no LoRA)."""
    layers = lm.model.layers
    ranks = {pair["A"].shape[0] for pair in lora.values()}
    if len(ranks) > 1:
        raise PartsError(f"MiniGPT-v2 checkpoint {path}: LoRA pairs of different ranks {sorted(ranks)}")
    for (layer, proj), pair in sorted(lora.items()):
        if layer >= len(layers):
            raise PartsError(f"MiniGPT-v2 checkpoint {path}: LoRA for layer {layer}, but the LM has {len(layers)}")
        weight = getattr(layers[layer].self_attn, proj).weight
        a, b = pair["A"], pair["B"]
        if a.shape[1] != weight.shape[1] or b.shape[0] != weight.shape[0] or b.shape[1] != a.shape[0]:
            raise PartsError(f"MiniGPT-v2 checkpoint {path}: layer {layer} {proj} LoRA A {tuple(a.shape)} and B "
                             f"{tuple(b.shape)} do not fit the LM's weight {tuple(weight.shape)}")
        with torch.no_grad():
            delta = (b.float() @ a.float()) * (alpha / a.shape[0])
            weight.copy_((weight.float() + delta.to(weight.device)).to(weight.dtype))
    return ranks.pop() if ranks else 0


def assemble_minigpt_v2(lm_path, vit_path, checkpoint_path, dtype: torch.dtype, vit_depth: int = 39,
                        vit_heads: int = 16, image_size: int = 448, released_lora_alpha: float = 16.0,
                        attn_implementation: str | None = None, log=print):
    """(``MiniGPTv2`` in ``dtype``, the LM's tokenizer) from the three released pieces (see the module doc)."""
    from transformers import AutoModelForCausalLM

    from coin.models.tokenizer_check import load_tokenizer

    lm_dir = _check_folder(lm_path, "Llama-2-chat LM", ("config.json",))
    if vit_path is None or checkpoint_path is None:
        raise MissingPartError("MiniGPT-v2 needs model.vit_path (eva_vit_g.pth) and model.checkpoint_path")
    # the two small files first, so a wrong one is refused before gigabytes of LM load
    own, lora, spelling = split_checkpoint(checkpoint_weights(checkpoint_path), checkpoint_path)
    vit, dropped = build_vit(read_state(vit_path, "EVA ViT file"), vit_path, vit_depth, vit_heads, image_size)
    log(f"assembling MiniGPT-v2: ViT {vit_path} ({vit_depth} blocks at {image_size} px"
        + (f"; dropped by design: {', '.join(_summarise(dropped))}" if dropped else "") + f"), checkpoint "
        f"{checkpoint_path} ({len(lora)} LoRA pairs, keys *.{spelling}), LM {lm_dir}")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    lm = _load_part(AutoModelForCausalLM, lm_dir, "Llama-2-chat LM", dtype=dtype, **extra)
    tokenizer = load_tokenizer(lm_dir)
    rank = merge_lora(lm, lora, released_lora_alpha, checkpoint_path)
    if rank:
        log(f"released LoRA (r {rank}) merged into q_proj/v_proj at alpha {released_lora_alpha:g}")
    else:
        log(f"MiniGPT-v2 checkpoint {checkpoint_path} holds no LoRA: the LM is used as it is")
    model = MiniGPTv2(vit, lm)
    proj = model.llama_proj
    for key, t in own.items():
        target = dict(model.named_parameters())[key]
        if tuple(t.shape) != tuple(target.shape):
            raise PartsError(f"MiniGPT-v2 checkpoint {checkpoint_path}: {key!r} has shape {tuple(t.shape)}, expected "
                             f"{tuple(target.shape)} (ViT width {vit.cls_token.shape[-1]} x {TOKENS_MERGED} -> LM "
                             f"width {proj.out_features})")
        with torch.no_grad():
            target.copy_(t)
    model.to(dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def _summarise(keys: list[str]) -> list[str]:
    """Dropped keys, one entry per block (``blocks.39.*``) or key."""
    out: dict[str, None] = {}
    for k in keys:
        m = re.match(r"(blocks\.\d+)\.", k)
        out[f"{m.group(1)}.*" if m else k] = None
    return list(out)
