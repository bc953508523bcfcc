"""Typed run configuration: dataclasses, loaded from YAML, validated once at the boundary.

Every problem is collected and reported at once with the key's full dotted name
(``train.lr must be > 0, got -1``; ``unknown key 'train.lrr' (did you mean 'train.lr'?)``)
before any data is generated or any weights load.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot run; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        where = f" in {source}" if source else ""
        super().__init__(f"invalid config{where}:\n  - " + "\n  - ".join(problems))


@dataclass
class SynthConfig:
    """CoIN-Synth sizes: samples per task (the base model's captions are set in model.pretrain)."""

    seed: int = 0
    n_train: int = 1500
    n_test: int = 100


@dataclass
class DataConfig:
    """Where the tasks' files are. ``benchmark: synth`` generates them into the cache."""

    benchmark: str = "synth"  # "synth" | "coin"
    root: str | None = None  # CoIN data root (the folder holding Instructions_Original/)
    image_root: str | None = None  # folder the records' image paths are relative to
    instructions: str = "original"  # instruction family: "original" (Type1), "diverse" (Type2), "10type"
    volume: float = 1.0  # fraction of each training set, seeded
    max_test: int | None = None  # evaluate on the first N test records of each task
    # per-task overrides, relative to root: {GQA: {train: ..., test: ..., image_root: ...}}
    paths: dict = field(default_factory=dict)
    # per-task answer files joined into the test records by question id, relative to root:
    # {TextVQA: TextVQA_0.5.1_val.json} (the official ten answers; coin.data.answers)
    answers: dict = field(default_factory=dict)
    # before a run: "exists" (stat each image: quick on network storage) or "open" (also read its header)
    check_images: str = "exists"
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class TasksConfig:
    order: Any = "paper"  # "paper", "alphabet", "shuffle:<seed>" or a list of task names
    eval: str = "seen"  # "seen": tasks trained so far; "all": every task after every stage


@dataclass
class PretrainConfig:
    """Caption pretraining of the built-in tiny model (cached by hash)."""

    seed: int = 0
    samples: int = 12000
    steps: int = 900
    batch_size: int = 32
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    vision_steps: int = 800  # stage 1: the vision tower learns scene labels (a stand-in for CLIP's pretraining)
    vision_batch_size: int = 64
    vision_lr: float = 2e-3


@dataclass
class ModelConfig:
    name: str = "tiny"  # a registered backbone: tiny, llava, llava-pretrain, qwen2-vl, hf
    path: str | None = None  # local folder or hub id, for real backbones
    trust_remote_code: bool = False  # only when you trust the model's own code
    dtype: str = "auto"  # weights' dtype: "auto" (bf16 on a GPU, fp32 on CPU), "fp32", "bf16", "fp16"
    gradient_checkpointing: bool = False  # recompute activations in backward (saves memory on real models)
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None: transformers' default
    # llava-pretrain: CoIN's starting point assembled from its parts (local folders / files)
    lm_path: str | None = None  # a Vicuna-style LM folder (LlamaForCausalLM + tokenizer)
    vision_path: str | None = None  # a CLIP vision folder (e.g. clip-vit-large-patch14-336)
    projector_path: str | None = None  # LLaVA's stage-1 mm_projector.bin (a plain state dict)
    # training sequences longer than this are cut at the end (LLaVA's model_max_length); None: the
    # backbone's own (2048 for llava / llava-pretrain, as LLaVA-1.5 trained), else the tokenizer's
    max_length: int | None = None
    image_cache_mb: int = 2048  # preprocessed images kept per process (LlavaVLM), in MiB; 0: none
    # Qwen2-VL-style processors: each image resized to this many pixels (28x28 per visual token);
    # the hub's max_pixels (12845056, ~16k tokens) runs out of memory on large photos
    min_pixels: int | None = None  # None: the processor's own (Qwen2-VL's 56 * 56, i.e. 4 visual tokens)
    max_pixels: int | None = 1280 * 28 * 28  # the upper bound Qwen2-VL's model card suggests
    tiny: dict = field(default_factory=dict)  # overrides of coin.models.tiny.TinyConfig
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class AdapterConfig:
    type: str = "lora"  # "lora" | "moelora"
    r: int = 32
    alpha: float = 64.0
    dropout: float = 0.0
    experts: int = 8  # MoELoRA: number of experts, each of rank r / experts
    train_projector: bool = True


@dataclass
class TrainConfig:
    lr: float = 2e-3
    projector_lr: float | None = None  # lr of the fully trained projector; None: train.lr (LLaVA's LoRA recipe: 2e-5)
    batch_size: int = 16
    epochs: float = 1.0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    checkpoint_every: int = 50  # in-stage checkpoint interval in optimizer steps; 0: only on SIGINT/SIGTERM
    on_nonfinite: str = "stop"  # "stop": a NaN/inf loss stops the stage; "skip": skip the batch and count it
    # processes that build batches (decode, preprocess, tokenise) ahead of the step; the batches are
    # the same for any value. None: 4 on a GPU, 0 on a CPU (coin.engine.loader.default_workers)
    num_workers: int | None = None


@dataclass
class EvalConfig:
    batch_size: int = 64
    zero_shot: bool = True
    bootstrap: int = 1000  # resamples for confidence intervals; 0 turns them off
    # generation limit per task, e.g. {OCR-VQA: 64}; a task not named gets its longest training
    # answer in the model's tokens plus a margin (coin.engine.limits)
    max_new_tokens: dict = field(default_factory=dict)
    # per-task scoring protocol by name, replacing the task's paper and strict protocols in both
    # tables, e.g. {TextVQA: single} for released files without the ten answers (coin.eval.protocols)
    protocol: dict = field(default_factory=dict)
    # questions on one image prefill the image once per batch (LLaVA models; coin.models.decode)
    share_prefix: bool = True
    # the frozen vision tower runs once per test image per run, not per question and stage
    # (LLaVA models; refused for a trainable tower; coin.models.vision_cache)
    cache_vision: bool = True


@dataclass
class LogConfig:
    """Telemetry (coin.engine.tracking): trackers fed per step and per stage; never changes a number."""

    # through accelerate's tracker API: tensorboard (RUN/logs/), wandb, mlflow (optional extras)
    trackers: list = field(default_factory=lambda: ["tensorboard"])
    project: str = "coin"  # the W&B project / MLflow experiment the run is logged to


@dataclass
class RunConfig:
    """One continual instruction-tuning experiment."""

    name: str | None = None
    seed: int = 0
    plugins: list = field(default_factory=list)  # modules or .py files imported first (they register methods, tasks...)
    method: str = "sequential"
    method_options: dict = field(default_factory=dict)  # the method's own options (see its Options dataclass)
    data: DataConfig = field(default_factory=DataConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- loading


def _check_type(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, tp)


def _build(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if not isinstance(data, dict):
        problems.append(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{full}'{hint}")
            continue
        tp = hints[key]
        value = _coerce_number(value, tp)
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, full + ".", problems)
        elif _check_type(value, tp):
            kwargs[key] = float(value) if tp is float else value
        else:
            problems.append(f"{full} must be {_type_name(tp)}, got {value!r}")
    return cls(**kwargs)


_SCI = __import__("re").compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce_number(value: Any, tp: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; read it as the number everyone means."""
    if isinstance(value, str) and _SCI.match(value.strip()) and _check_type(1.0, tp):
        return float(value)
    return value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def import_plugins(plugins: list, problems: list[str]) -> None:
    """Import each plugin (a module name or a ``.py`` file) so its registrations take effect."""
    import importlib
    import importlib.util
    import sys

    for k, name in enumerate(plugins):
        try:
            if str(name).endswith(".py"):
                path = Path(name).resolve()
                mod_name = f"coin_plugin_{path.stem}"
                if mod_name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(str(name))
        except Exception as e:  # report, with the key, whatever the plugin raised
            problems.append(f"plugins[{k}] ({name}): cannot import: {e}")


def _validate(cfg: RunConfig, problems: list[str]) -> None:
    import_plugins(cfg.plugins, problems)

    def positive(key: str, v: float) -> None:
        if v <= 0:
            problems.append(f"{key} must be > 0, got {v}")

    for key in ("train.lr", "train.batch_size", "train.epochs", "train.grad_accum", "eval.batch_size",
                "adapter.r", "adapter.alpha", "model.pretrain.steps", "model.pretrain.batch_size", "model.pretrain.lr"):
        section, *rest = key.split(".")
        obj = getattr(cfg, section)
        for part in rest[:-1]:
            obj = getattr(obj, part)
        positive(key, getattr(obj, rest[-1]))
    if not 0 < cfg.data.volume <= 1:
        problems.append(f"data.volume must be in (0, 1], got {cfg.data.volume}")
    if cfg.train.projector_lr is not None and cfg.train.projector_lr < 0:
        problems.append(f"train.projector_lr must be >= 0, got {cfg.train.projector_lr}")
    if not 0 <= cfg.train.warmup_ratio < 1:
        problems.append(f"train.warmup_ratio must be in [0, 1), got {cfg.train.warmup_ratio}")
    if not 0 <= cfg.adapter.dropout < 1:
        problems.append(f"adapter.dropout must be in [0, 1), got {cfg.adapter.dropout}")
    if cfg.model.max_length is not None and cfg.model.max_length < 1:
        problems.append(f"model.max_length must be >= 1 (or null for the backbone's own), got {cfg.model.max_length}")
    if cfg.model.image_cache_mb < 0:
        problems.append(f"model.image_cache_mb must be >= 0, got {cfg.model.image_cache_mb}")
    for key in ("min_pixels", "max_pixels"):
        if getattr(cfg.model, key) is not None and getattr(cfg.model, key) < 1:
            problems.append(f"model.{key} must be >= 1 (or null for the processor's own), got {getattr(cfg.model, key)}")
    if None not in (cfg.model.min_pixels, cfg.model.max_pixels) and cfg.model.min_pixels > cfg.model.max_pixels:
        problems.append(f"model.min_pixels ({cfg.model.min_pixels}) must be <= model.max_pixels ({cfg.model.max_pixels})")
    if cfg.model.dtype not in ("auto", "fp32", "bf16", "fp16"):
        problems.append(f"model.dtype must be one of auto, fp32, bf16, fp16, got {cfg.model.dtype!r}")
    if cfg.train.precision not in ("fp32", "bf16", "fp16"):
        problems.append(f"train.precision must be one of fp32, bf16, fp16, got {cfg.train.precision!r}")
    if cfg.train.on_nonfinite not in ("stop", "skip"):
        problems.append(f"train.on_nonfinite must be 'stop' or 'skip', got {cfg.train.on_nonfinite!r}")
    if cfg.train.num_workers is not None and cfg.train.num_workers < 0:
        problems.append(f"train.num_workers must be >= 0 or null, got {cfg.train.num_workers}")
    from coin.tasks import TASKS

    for task, n in (cfg.eval.max_new_tokens or {}).items():
        if task not in TASKS:
            problems.append(f"eval.max_new_tokens: {TASKS.unknown_message(task)}")
        elif isinstance(n, bool) or not isinstance(n, int) or n < 1:
            problems.append(f"eval.max_new_tokens.{task} must be a positive integer, got {n!r}")
    from coin.eval.protocols import choice_problems

    problems += choice_problems(cfg.eval.protocol, "eval.protocol")
    if cfg.train.checkpoint_every < 0:
        problems.append(f"train.checkpoint_every must be >= 0, got {cfg.train.checkpoint_every}")
    if cfg.data.benchmark not in ("synth", "coin"):
        problems.append(f"data.benchmark must be 'synth' or 'coin', got {cfg.data.benchmark!r}")
    if cfg.data.benchmark == "coin" and not cfg.data.root:
        problems.append("data.root is required when data.benchmark is 'coin'")
    from coin.engine.tracking import tracker_problems

    problems += tracker_problems(cfg.log.trackers)
    if cfg.tasks.eval not in ("seen", "all"):
        problems.append(f"tasks.eval must be 'seen' or 'all', got {cfg.tasks.eval!r}")
    from coin.data.benchmark import config_problems
    from coin.data.orders import order_problems

    problems += order_problems(cfg.tasks.order)
    problems += config_problems(cfg.data)
    from coin.methods import METHODS
    from coin.models import MODELS

    if cfg.method not in METHODS:
        problems.append(f"method: {METHODS.unknown_message(cfg.method)}")
    else:
        problems += METHODS.get(cfg.method).validate(cfg.method_options)
    from coin.adapters import ADAPTERS

    if cfg.adapter.type not in ADAPTERS:
        problems.append(f"adapter.type: {ADAPTERS.unknown_message(cfg.adapter.type)}")
    if cfg.adapter.experts < 1:
        problems.append(f"adapter.experts must be >= 1, got {cfg.adapter.experts}")
    elif cfg.adapter.type == "moelora" and cfg.adapter.r % cfg.adapter.experts:
        problems.append(f"adapter.r ({cfg.adapter.r}) must be divisible by adapter.experts ({cfg.adapter.experts})")
    if cfg.model.name not in MODELS:
        problems.append(f"model.name: {MODELS.unknown_message(cfg.model.name)}")
    elif cfg.model.name == "llava-pretrain":
        for key in ("lm_path", "vision_path", "projector_path"):
            if not getattr(cfg.model, key):
                problems.append(f"model.{key} is required for model.name 'llava-pretrain'")
    elif cfg.model.name in ("llava", "qwen2-vl", "hf") and not cfg.model.path:
        problems.append(f"model.path is required for model.name {cfg.model.name!r} (a local folder or a hub id)")


def parse_overrides(items: list[str]) -> dict:
    """``["train.lr=1e-4", "tasks.order=[GQA, VQAv2]"]`` -> a nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError([f"--set {item!r} must look like key=value"])
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    """Recursively merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(data: dict, source: str | None = None) -> RunConfig:
    """Build and validate a ``RunConfig``; raises ``ConfigError`` listing every problem."""
    problems: list[str] = []
    cfg = _build(RunConfig, data, "", problems)
    if not problems:
        _validate(cfg, problems)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); ``ConfigError`` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{what} {p} does not exist"], str(path))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the top level must be a mapping"], str(path))
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (the embedded default when ``path`` is None) and apply ``--set`` overrides."""
    data: dict = {}
    source = None
    if path is not None:
        source = str(path)
        data = read_yaml_mapping(path, "config file")
    if overrides:
        data = merge(data, parse_overrides(overrides))
    return from_dict(data, source)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what a run folder stores)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def with_defaults(stored: dict) -> dict:
    """A stored config (e.g. a run folder's, written by an older coin) with keys added since filled in.

    Keys the stored config has keep their values, unknown ones included; only absent keys take
    today's defaults, so an upgrade alone neither splits a comparison nor blocks a resume.
    """

    def merge(default: Any, value: Any) -> Any:
        if isinstance(default, dict) and isinstance(value, dict):
            return {**{k: merge(default[k], value[k]) if k in value else default[k] for k in default},
                    **{k: v for k, v in value.items() if k not in default}}
        return value

    return merge(RunConfig().to_dict(), stored)
