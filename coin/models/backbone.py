"""What the engine needs from a model, and the registry of backbones that provide it.

A backbone is one registry entry (a ``Backbone`` subclass, ``name`` its registered name) in its family's
``backbone.py`` (``coin.models.<family>/``, beside the family's wrapper and parts): its ``Options`` (the
keys it takes under ``model:`` beside the common ones), ``load`` (the wrapper the engine
trains and evaluates: a ``VLM``), and optionally ``check_section`` (rules joining its keys
with the common ones), ``prepare`` (work done once before a sweep starts its processes, e.g.
the tiny model's cached pretraining), ``weights`` (the files it will read, which
``coin run --dry-run`` checks) and ``summary`` (its line in the plan). ``coin ls backbones``
lists the entries with their options.

The wrapper's interface is the ``VLM`` protocol: everything the engine, the adapters and the
methods use of it, and nothing more. What only some wrappers can do is a capability with a
protocol of its own (``SharesPrefix``, ``CachesVision``, ``CountsTruncation``), asked with
``isinstance`` where it is used.

This module imports no torch; the wrappers it describes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from coin.options import NoOptions, parsed
from coin.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

    from coin.config import ModelConfig
    from coin.data.sample import Sample

__all__ = ["BACKBONES", "Backbone", "CachesVision", "CountsTruncation", "NoOptions", "PathBackbone", "PathOptions",
           "SharesPrefix", "VLM", "WeightPath", "hf_load_kwargs", "image_cache_problems", "load_model",
           "missing_members", "parsed_section", "torch_dtype"]


@runtime_checkable
class VLM(Protocol):
    """The model wrapper every backbone returns (``LlavaVLM``, ``ChatVLM``, or a plugin's own).

    What the engine (``coin.engine``), the adapters and the methods use of it:

    - ``model``: the ``nn.Module`` trained and evaluated; ``attach_adapter`` replaces it with
      the PEFT-wrapped model, so read it afresh rather than keeping a reference;
    - ``processor`` and ``tokenizer``: the model's own; the engine tokenises answers with
      ``tokenizer`` to set generation limits and sorts prompts by their token length;
    - ``lora_target``: the modules an adapter adapts (PEFT's ``target_modules``: a regex or a
      list of names); ``full_train``: modules trained fully beside it (LLaVA's projector);
    - ``train_batch``: model inputs with ``labels`` on the answer tokens only;
    - ``generate``: greedy answers, one per sample, in order, stripped;
    - both take text-only samples (``Sample.image`` None), prompted without image tokens, in
      batches that may mix them with image samples;
    - ``save_base``: the base weights and processor, reloadable with ``from_pretrained``.
    """

    model: Any
    processor: Any
    tokenizer: Any
    lora_target: Any
    full_train: Sequence[str]

    def train_batch(self, samples: list[Sample]) -> dict:
        """Padded model inputs (tensors) with ``labels`` (-100 everywhere but the answer tokens)."""
        ...

    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers of at most ``max_new_tokens`` tokens, one per sample, in order."""
        ...

    def save_base(self, path: str | Path) -> None:
        """Write the base weights (safetensors) and the processor to ``path``."""
        ...


@runtime_checkable
class SharesPrefix(Protocol):
    """A wrapper that can prefill the prompt prefix shared by questions on one image once per batch.

    The engine sets ``share_prefix`` from ``eval.share_prefix`` and then groups each image's
    questions into the same batches (``coin.engine.evaluate``). The answers are the same either way.
    """

    share_prefix: bool


@runtime_checkable
class CachesVision(Protocol):
    """A wrapper that can keep its frozen vision tower's features per image (``coin.models.vision_cache``)."""

    def enable_vision_cache(self, max_mb: int = ...) -> None:
        """Start caching; raises ``VisionCacheRefused`` while the tower has trainable parameters."""
        ...


@runtime_checkable
class CachesPixels(Protocol):
    """A wrapper that keeps preprocessed images in a bounded cache (``PixelCache``)."""

    def limit_pixel_cache(self, max_bytes: int) -> None:
        """Keep at most ``max_bytes`` of preprocessed images from now on (0: keep none)."""
        ...


@runtime_checkable
class CountsTruncation(Protocol):
    """A wrapper that can say which training samples ``max_length`` cuts (for the stage's log line)."""

    max_length: int | None

    def truncated_ids(self, samples: list[Sample]) -> list[str]:
        """Ids of the samples whose training sequence is longer than ``max_length``."""
        ...


def missing_members(obj: Any, protocol: type = VLM) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks (empty: ``isinstance(obj, protocol)`` holds)."""
    names = getattr(protocol, "__protocol_attrs__", None) or _protocol_members(protocol)  # the former: Python 3.12+
    return sorted(n for n in names if not hasattr(obj, n))


def _protocol_members(protocol: type) -> set[str]:
    """A protocol's attributes and methods (Python 3.11 keeps them in no public place)."""
    members = set(getattr(protocol, "__annotations__", {}))
    members |= {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
    return members


@dataclass(frozen=True)
class WeightPath:
    """A file or folder a backbone will read, as ``coin run --dry-run`` checks it before a run.

    ``key`` is the config key that names it (``model.path``); ``kind`` is ``"folder"`` or
    ``"file"``; ``hub``: the value may be a Hugging Face hub id, fetched when the model loads;
    ``fetch``: the shell lines that fetch it when it is missing (``{path}`` is the path, ``{dir}``
    its folder), printed by the dry run.
    """

    key: str
    path: str
    kind: str = "folder"
    hub: bool = False
    fetch: tuple[str, ...] = ()


class Backbone:
    """Base of a ``BACKBONES`` entry: override ``Options`` and ``load``; the rest is optional.

    Every method receives the validated ``model`` section (``ModelConfig``: name, dtype,
    trust_remote_code, gradient_checkpointing, attn_implementation, max_length) whose
    ``options`` hold this entry's parsed ``Options``.
    """

    Options: type = NoOptions
    # where this backbone's training or evaluation deliberately differs from the code CoIN ran it with
    # (bugs fixed), one line each; every report's protocol card lists them
    deviations: tuple[str, ...] = ()
    # per task, the scoring protocol the code CoIN ran this backbone with used for its paper numbers,
    # where that is not the task's own `paper` (MiniGPT-v2's Grounding script): the task's paper
    # protocol in this backbone's runs (coin.tasks.protocol_sets.with_backbone)
    protocols: Mapping[str, str] = MappingProxyType({})
    # whether the wrapper honours eval.image_mode (the LLaVA wrappers, coin.tasks.image_modes); the others
    # preprocess test images with their own processors and refuse any mode but the default, pad
    image_modes: bool = False
    # training sequences' limit when model.max_length is unset (None: the tokenizer's model_max_length,
    # else none); the memory plan reads it (coin.models.arch_sizes)
    default_max_length: int | None = None
    # whether ``load`` builds its model through ``coin.models.empty.from_pretrained``: then under several
    # processes only the main one reads the weights and sends them to the others, which build the model
    # empty (on the meta device); otherwise every process reads the whole model (coin.engine.weights_from_main)
    loads_empty: bool = False

    @staticmethod
    def load(cfg: ModelConfig, log: Callable[[str], None] = print, progress: bool = True) -> VLM:
        """The wrapper for ``cfg`` (``load_model`` adds gradient checkpointing on request)."""
        raise NotImplementedError

    @classmethod
    def size_config(cls, cfg: ModelConfig) -> tuple[dict, str] | None:
        """A transformers-style config (``text_config`` + ``vision_config``) giving the model's sizes, and
        where it came from, for the dry run's memory estimate; None: read the ``config.json`` of its folder."""
        return None

    @staticmethod
    def check_section(cfg: ModelConfig) -> list[str]:
        """Problems joining this backbone's keys with the section's common ones (full keys)."""
        return []

    @classmethod
    def prepare(cls, cfg: ModelConfig, log: Callable[[str], None] = print, own: bool = False) -> None:
        """Work to do once before several runs start in parallel (nothing by default).

        ``own``: the user asked for it (``coin model prepare``): build it here even where the package
        ships a ready copy (the tiny base), rather than use that copy.
        """

    @classmethod
    def weights(cls, cfg: ModelConfig) -> list[WeightPath]:
        """The files and folders ``load`` will read (none by default: e.g. a cached or built model)."""
        return []

    @classmethod
    def summary(cls, cfg: ModelConfig) -> str:
        """The model's line in a run's plan (``llava (llava-hf/llava-1.5-7b-hf)``)."""
        return cfg.name


@dataclass
class PathOptions:
    """The keys of a backbone loaded from one folder or hub id."""

    path: str | None = None  # local folder or hub id of the model

    def check(self) -> list[str]:
        return [] if self.path else ["path is required (a local folder or a hub id)"]


def image_cache_problems(mb: int) -> list[str]:
    """``image_cache_mb``'s own check, shared by the backbones that keep preprocessed images (``PixelCache``)."""
    return [f"image_cache_mb must be >= 0, got {mb}"] if mb < 0 else []


class PathBackbone(Backbone):
    """Base of a backbone whose weights are one folder or hub id, ``model.path``."""

    Options: type = PathOptions

    @classmethod
    def weights(cls, cfg: ModelConfig) -> list[WeightPath]:
        return [WeightPath("model.path", cfg.options.path, "folder", hub=True)] if cfg.options.path else []

    @classmethod
    def summary(cls, cfg: ModelConfig) -> str:
        return f"{cfg.name} ({cfg.options.path})" if cfg.options.path else cfg.name


# builtins: the modules that register the built-in backbones, one per family (imported on the first lookup)
BACKBONES: Registry[type[Backbone]] = Registry("backbone", builtins=(
    "coin.models.chat.backbone", "coin.models.llava.backbone", "coin.models.minigpt_v2.backbone",
    "coin.models.qwen_vl_chat.backbone", "coin.models.tiny.backbone"))


def torch_dtype(name: str):
    """``model.dtype`` as a torch dtype; "auto" is bf16 on a GPU and fp32 on the CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def hf_load_kwargs(cfg: ModelConfig) -> dict:
    """Keyword arguments for ``from_pretrained`` from the model config (dtype, attention, remote code)."""
    kw = {"dtype": torch_dtype(cfg.dtype), "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kw["attn_implementation"] = cfg.attn_implementation
    return kw


def parsed_section(cfg: ModelConfig) -> ModelConfig:
    """``cfg`` with ``options`` parsed by its backbone's Options and checked with the section.

    A section from ``coin.config_load`` is returned as it is; one built by hand (``options`` still a
    mapping) is parsed here, so a bad key still names itself (``OptionsError``).
    """
    return parsed(cfg, "model", "name", BACKBONES)


def load_model(cfg: ModelConfig, log: Callable[[str], None] = print, progress: bool = True) -> VLM:
    """The wrapper of backbone ``cfg.name`` (an unknown name lists the choices), checkpointing on request.

    A wrapper that lacks part of ``VLM`` is refused here, naming what it lacks, rather than
    failing later inside the engine.
    """
    cfg = parsed_section(cfg)
    vlm = BACKBONES.get(cfg.name).load(cfg, log, progress)
    missing = missing_members(vlm)
    if missing:
        raise TypeError(f"backbone {cfg.name!r} returned a {type(vlm).__name__}, which lacks "
                        f"{', '.join(missing)} of coin.models.backbone.VLM")
    if cfg.gradient_checkpointing:
        from coin.models.modes import checkpoint_activations  # torch: imported when a model loads
        checkpoint_activations(vlm.model)
    return vlm
