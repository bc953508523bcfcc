"""Typed run configuration: the dataclasses, YAML reading, ``--set`` overrides and merging.

This module is a leaf: it imports nothing else of coin but the options builder, so every
part of coin may read a config. Each section checks its own values (``check()``); what
needs a registry (a method's name and options, a backbone's or an adapter's own keys, task
names, trackers) is validated one layer up, in ``coin.config_load``, which is also where a
config is loaded (``load_config``, ``from_dict``). Every problem is collected and reported
at once with the key's full dotted name (``train.lr must be > 0, got -1``; ``unknown key
'train.lrr' (did you mean 'train.lr'?)``) before any data is generated or any weights load.

Every number is finite (``coin.options`` refuses NaN and infinities at any key) and in a range
a run can use: besides each key's own lower bound, the ``MAX_*`` constants below cap the values
that would validate and then fail or exhaust memory (``eval.max_new_tokens`` <= 8192, ``seed`` in
[0, 4294966], ``train.epochs`` <= 1000...). A config file is UTF-8 (a BOM is accepted); an
unreadable one, or a ``--set`` value that is not YAML, is a one-line ``ConfigError`` naming the
file or the key.

``model`` and ``adapter`` are open sections: besides their common keys they take the keys
of the backbone (``model.name``) or adapter (``adapter.type``) they select, e.g.
``model.path`` or ``adapter.experts``, declared and checked by that registry entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from coin.errors import ConfigError
from coin.options import flat_dict


# Upper bounds of values that would validate but could never run (a 204 GB allocation, a list of
# a trillion batch indices, a numpy seed past 2**32); each is documented where its key is declared.
MAX_NEW_TOKENS = 8192  # eval.max_new_tokens: longer than any answer CoIN's tasks ask for
MAX_SEED = (2**32 - 1) // 1000 - 1  # seed * 1000 + stage seeds numpy, which takes 0 .. 2**32 - 1
MAX_EPOCHS = 1000.0  # train.epochs: the step plan lists every batch of every epoch
MAX_RANK = 8192  # adapter.r: the rank of a full-width update of the widest backbones
MAX_WORKERS = 256  # train.num_workers: processes, each holding a copy of the loader's state
IMAGE_MODES = ("pad", "paper", "crop")  # eval.image_mode (coin.tasks.image_modes)
MAX_BOOTSTRAP = 100_000  # eval.bootstrap: resamples held at once (resamples x tasks x tasks floats)
MAX_SYNTH = 1_000_000  # data.synth.n_train / n_test: generated images per task and split


def _within(obj: Any, key: str, lo: float, hi: float | None = None, null: str = "") -> list[str]:
    """``key must be in [lo, hi]`` (or ``>= lo`` without ``hi``) when its value is outside; None passes."""
    value = getattr(obj, key)
    if value is None or (lo <= value and (hi is None or value <= hi)):
        return []
    fmt = (lambda v: f"{v:g}") if isinstance(lo, float) else str
    bound = f">= {fmt(lo)}" if hi is None else f"in [{fmt(lo)}, {fmt(hi)}]"
    return [f"{key} must be {bound}{null}, got {value!r}"]


def _positive(obj: Any, *keys: str) -> list[str]:
    return [f"{k} must be > 0, got {getattr(obj, k)}" for k in keys if getattr(obj, k) <= 0]


def _one_of(obj: Any, key: str, choices: tuple[str, ...]) -> list[str]:
    value = getattr(obj, key)
    if value in choices:
        return []
    listed = " or ".join(repr(c) for c in choices) if len(choices) == 2 else "one of " + ", ".join(choices)
    return [f"{key} must be {listed}, got {value!r}"]


def _plain_name(name: str) -> bool:
    """A name that stays one folder below its parent: ``runs/<name>`` can never point elsewhere."""
    return bool(name) and name.strip() == name and not any(c in name for c in "/\\\0:") and not name.startswith(".")


def _real(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(obj: Any, *keys: str) -> list[str]:
    return [f"{k} must be a finite number, got {getattr(obj, k)}" for k in keys if not math.isfinite(getattr(obj, k))]


@dataclass
class SynthConfig:
    """CoIN-Synth sizes: samples per task (the base model's captions are set in model.pretrain)."""

    seed: int = 0
    n_train: int = 1500  # 1 .. MAX_SYNTH
    n_test: int = 100  # 1 .. MAX_SYNTH

    def check(self) -> list[str]:
        return _within(self, "n_train", 1, MAX_SYNTH) + _within(self, "n_test", 1, MAX_SYNTH)


@dataclass
class DataConfig:
    """Where the tasks' files are. ``benchmark: synth`` generates them into the cache."""

    benchmark: str = "synth"  # a registered benchmark (coin ls benchmarks): synth, coin, ucit, mllm-dcl, mllm-acl
    root: str | None = None  # CoIN data root (the folder holding Instructions_Original/)
    image_root: str | None = None  # folder the records' image paths are relative to
    instructions: str = "original"  # instruction family: "original" (Type1), "diverse" (Type2), "10type"
    # which of CoIN's released file sets the training prompts come from: "llava" (Instructions_<Family>/),
    # "qwen" (Instructions_Qwen/, Qwen-VL's conversations, where it holds the task) or "auto": the
    # backbone's (qwen for qwen-vl-chat, written into the config; coin.benchmarks.coin.benchmark.bind_file_set)
    file_set: str = "auto"
    volume: float = 1.0  # fraction of each training set, seeded
    max_test: int | None = None  # evaluate on the first N (>= 1) test records of each task; null: all
    # per-task overrides, relative to root: {GQA: {train: ..., test: ..., image_root: ...}}
    paths: dict = field(default_factory=dict)
    # per-task answer files joined into the test records by question id, relative to root:
    # {TextVQA: TextVQA_0.5.1_val.json} (the official ten answers; coin.data.answers)
    answers: dict = field(default_factory=dict)
    # how far each distinct image is checked before anything loads (coin.benchmarks.check): "exists" stats it
    # (quick on network storage), then reads its header while the model loads, before the first step;
    # "open" reads every header first; "decode" also decodes every image first (finds truncated bodies)
    check_images: str = "exists"
    # an image whose header declares more pixels is refused by name, before its pixels are allocated
    # (a decompression bomb); the default is PIL's own error threshold (coin.data.images)
    max_image_pixels: int = 178_956_970
    synth: SynthConfig = field(default_factory=SynthConfig)

    def check(self) -> list[str]:
        problems = []  # data.benchmark and what it requires are checked by its registry (coin.benchmarks.layout)
        if not 0 < self.volume <= 1:
            problems.append(f"volume must be in (0, 1], got {self.volume}")
        if self.max_image_pixels < 1:
            problems.append(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        problems += _within(self, "max_test", 1, null=" (or null for every record)")
        return problems


@dataclass
class TasksConfig:
    order: Any = "paper"  # "paper", "alphabet", "shuffle:<seed>" or a list of task names
    eval: str = "seen"  # "seen": tasks trained so far; "all": every task after every stage

    def check(self) -> list[str]:
        return _one_of(self, "eval", ("seen", "all"))


@dataclass
class ModelConfig:
    """The backbone: ``name`` picks it; its own keys (``path``...) are declared by it (``coin ls backbones``)."""

    __open__ = "options"

    name: str = "tiny"  # a registered backbone (coin ls backbones): tiny, llava, llava-pretrain, qwen2-vl, hf
    trust_remote_code: bool = False  # only when you trust the model's own code
    dtype: str = "auto"  # weights' dtype: "auto" (bf16 on a GPU, fp32 on CPU), "fp32", "bf16", "fp16"
    gradient_checkpointing: bool = False  # recompute activations in backward (saves memory on real models)
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"; None: transformers' default
    # training sequences longer than this are cut at the end (LLaVA's model_max_length); None: the
    # backbone's own (2048 for LLaVA-1.5 as it trained), else the tokenizer's
    max_length: int | None = None
    # the backbone's own keys, written beside the ones above (model.path, model.pretrain...); after
    # validation, the backbone's parsed Options
    options: Any = field(default_factory=dict)

    def check(self) -> list[str]:
        problems = _one_of(self, "dtype", ("auto", "fp32", "bf16", "fp16"))
        if self.max_length is not None and self.max_length < 1:
            problems.append(f"max_length must be >= 1 (or null for the backbone's own), got {self.max_length}")
        return problems


@dataclass
class AdapterConfig:
    """The parameter-efficient adapter: ``type`` picks it; its own keys (e.g. ``experts``) are declared by it."""

    __open__ = "options"

    type: str = "lora"  # a registered adapter (coin ls adapters): lora, moelora
    r: int = 32  # rank, 1 .. MAX_RANK (8192)
    alpha: float = 64.0  # scaling numerator (the update is scaled by alpha / r)
    dropout: float = 0.0  # dropout on the adapter's input
    train_projector: bool = True  # also train the backbone's fully trained modules (LLaVA's projector)
    options: Any = field(default_factory=dict)  # the adapter's own keys; after validation its parsed Options

    def check(self) -> list[str]:
        problems = _positive(self, "r", "alpha")
        if self.r > MAX_RANK:
            problems.append(f"r must be <= {MAX_RANK}, got {self.r}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        return problems


@dataclass
class TaskTrainConfig:
    """One task's training overrides (``train.per_task.<Task>``); a key left out keeps ``train``'s value."""

    batch_size: int | None = None  # per process, as train.batch_size
    grad_accum: int | None = None
    epochs: float | None = None  # (0, MAX_EPOCHS], as train.epochs
    lr: float | None = None

    def check(self) -> list[str]:
        problems = [f"{k} must be >= 1, got {getattr(self, k)}" for k in ("batch_size", "grad_accum")
                    if getattr(self, k) is not None and getattr(self, k) < 1]
        problems += [f"{k} must be a finite number > 0, got {getattr(self, k)}" for k in ("epochs", "lr")
                     if getattr(self, k) is not None and not (math.isfinite(getattr(self, k)) and getattr(self, k) > 0)]
        if self.epochs is not None and math.isfinite(self.epochs) and self.epochs > MAX_EPOCHS:
            problems.append(f"epochs must be <= {MAX_EPOCHS:g}, got {self.epochs}")
        return problems


@dataclass
class TrainConfig:
    lr: float = 2e-3
    projector_lr: float | None = None  # lr of the fully trained projector; None: train.lr (LLaVA's LoRA recipe: 2e-5)
    batch_size: int = 16
    epochs: float = 1.0  # (0, MAX_EPOCHS]: 1000
    warmup_ratio: float = 0.03
    # the lr schedule by name (coin.schedule): "cosine" (linear warm-up, cosine to 0), "constant"
    # (linear warm-up, then constant) or "warmup_lr" (DeepSpeed's WarmupLR, as CoIN's scripts ran it)
    schedule: str = "cosine"
    weight_decay: float = 0.0  # >= 0 (torch's AdamW refuses a negative one)
    adam_betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW's (beta1, beta2); torch's default
    adam_eps: float = 1e-8  # AdamW's eps; torch's default
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    checkpoint_every: int = 50  # in-stage checkpoint interval in optimizer steps; 0: only on SIGINT/SIGTERM
    # also a checkpoint once this many minutes have passed since the last one (None: by steps only);
    # the processes agree on it every step (coin.engine.train)
    checkpoint_minutes: float | None = None
    # periodic checkpoints written by a background thread while training goes on (coin.engine.checkpoint
    # AsyncCheckpointer: the same atomic folder and checksum); False: the step waits for the write
    checkpoint_async: bool = True
    on_nonfinite: str = "stop"  # "stop": a NaN/inf loss stops the stage; "skip": skip the batch and count it
    # the LM head at training (coin.engine.lm_loss): "labelled" projects only the positions whose next token
    # has a label (the answers), "all" every position (transformers' own loss; a method reading all logits)
    logits: str = "labelled"
    # processes that build batches (decode, preprocess, tokenise) ahead of the step; the batches are
    # the same for any value, 0 .. MAX_WORKERS (256). None: 4 on a GPU, 0 on a CPU (coin.engine.loader.default_workers)
    num_workers: int | None = None
    # one task's stage trained with other values of batch_size, grad_accum, epochs or lr, e.g.
    # {GQA: {batch_size: 6, grad_accum: 8}}; a key left out keeps the value above (for_task)
    per_task: dict[str, TaskTrainConfig] = field(default_factory=dict)

    def for_task(self, task: str) -> TrainConfig:
        """The training config of ``task``'s stage: ``per_task[task]``'s keys in place (itself when it has none)."""
        over = self.per_task.get(task)
        if over is None:
            return self
        changes = {k: v for k, v in (over if isinstance(over, dict) else flat_dict(over)).items() if v is not None}
        return replace(self, **changes) if changes else self

    def check(self) -> list[str]:
        problems = _positive(self, "lr", "batch_size", "epochs", "grad_accum")
        problems += _finite(self, "lr", "epochs", "weight_decay", "max_grad_norm")
        if math.isfinite(self.epochs) and self.epochs > MAX_EPOCHS:
            problems.append(f"epochs must be <= {MAX_EPOCHS:g}, got {self.epochs}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (isinstance(self.adam_betas, list) and len(self.adam_betas) == 2
                and all(_real(b) and 0 <= b < 1 for b in self.adam_betas)):
            problems.append(f"adam_betas must be two numbers in [0, 1), e.g. [0.9, 0.999], got {self.adam_betas!r}")
        if not (math.isfinite(self.adam_eps) and self.adam_eps > 0):
            problems.append(f"adam_eps must be a finite number > 0, got {self.adam_eps}")
        if self.projector_lr is not None and self.projector_lr < 0:
            problems.append(f"projector_lr must be >= 0, got {self.projector_lr}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        problems += _one_of(self, "precision", ("fp32", "bf16", "fp16"))
        problems += _one_of(self, "on_nonfinite", ("stop", "skip"))
        problems += _one_of(self, "logits", ("labelled", "all"))
        if self.checkpoint_minutes is not None and not (isinstance(self.checkpoint_minutes, (int, float))
                                                        and not isinstance(self.checkpoint_minutes, bool)
                                                        and 0 < self.checkpoint_minutes <= 10080):
            problems.append(f"checkpoint_minutes must be a number of minutes in (0, 10080] or null, "
                            f"got {self.checkpoint_minutes!r}")
        if not isinstance(self.checkpoint_async, bool):
            problems.append(f"checkpoint_async must be true or false, got {self.checkpoint_async!r}")
        if self.num_workers is not None and not 0 <= self.num_workers <= MAX_WORKERS:
            problems.append(f"num_workers must be in [0, {MAX_WORKERS}] or null, got {self.num_workers}")
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        return problems


@dataclass
class EvalConfig:
    batch_size: int = 64
    zero_shot: bool = True
    bootstrap: int = 1000  # resamples for confidence intervals, 0 .. MAX_BOOTSTRAP (100000); 0 turns them off
    # generation limit per task, e.g. {OCR-VQA: 64}, each 1 .. MAX_NEW_TOKENS (8192); a task not named
    # gets its longest training answer in the model's tokens plus a margin (coin.engine.limits)
    max_new_tokens: dict = field(default_factory=dict)
    # per-task scoring protocol by name, replacing the task's paper and strict protocols in both
    # tables, e.g. {TextVQA: single} for released files without the ten answers (coin.tasks.protocol_sets)
    protocol: dict = field(default_factory=dict)
    # questions on one image prefill the image once per batch (LLaVA models; coin.models.decode)
    share_prefix: bool = True
    # the frozen vision tower runs once per test image per run, not per question and stage
    # (LLaVA models; refused for a trainable tower; coin.models.vision_cache)
    cache_vision: bool = True
    # test images: pad (to a square, as in training; coin's default), paper (the original's: centre crop for
    # ScienceQA, ImageNet, Grounding and VQAv2, pad for the others) or crop (all); LLaVA backbones (coin.tasks.image_modes)
    image_mode: str = "pad"

    def check(self) -> list[str]:
        problems = _positive(self, "batch_size") + _within(self, "bootstrap", 0, MAX_BOOTSTRAP)
        problems += _one_of(self, "image_mode", IMAGE_MODES)
        for task, n in (self.max_new_tokens or {}).items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                problems.append(f"max_new_tokens.{task} must be a positive integer, got {n!r}")
            elif n > MAX_NEW_TOKENS:
                problems.append(f"max_new_tokens.{task} must be <= {MAX_NEW_TOKENS}, got {n}")
        return problems


@dataclass
class LogConfig:
    """Telemetry (coin.tracking): trackers fed per step and per stage; never changes a number."""

    # through accelerate's tracker API: tensorboard (RUN/logs/), wandb, mlflow (optional extras)
    trackers: list = field(default_factory=lambda: ["tensorboard"])
    project: str = "coin"  # the W&B project / MLflow experiment the run is logged to


@dataclass
class DistConfig:
    """How several processes share the model (docs/distributed.md); one process ignores it."""

    # "ddp": every process holds the whole model (data parallel); "fsdp": the frozen base is sharded over
    # the processes with FSDP2, the adapter replicated (coin.engine.fsdp). The launch (accelerate or
    # torchrun) sets the number of processes either way
    strategy: str = "ddp"
    # the memory of one GPU in GiB (nvidia-smi's MiB / 1024: 80 for an A100 80GB); `coin run --dry-run`
    # checks its memory estimate against it and names the largest per-GPU batch that fits (coin.engine.memory);
    # null: the estimate is printed unchecked. The run itself does not read it
    gpu_memory_gib: float | None = None
    # under "fsdp": each process keeps AdamW's moments for its share of the trainable weights only (ZeRO
    # stage 1; 8 + 8/N bytes per trainable weight instead of 16), the same updates (coin.engine.fsdp.adamw)
    shard_optimizer: bool = True

    def check(self) -> list[str]:
        problems = _one_of(self, "strategy", ("ddp", "fsdp"))
        if not isinstance(self.shard_optimizer, bool):
            problems.append(f"shard_optimizer must be true or false, got {self.shard_optimizer!r}")
        g = self.gpu_memory_gib
        if g is not None and not (isinstance(g, (int, float)) and math.isfinite(g) and g > 0):
            problems.append(f"gpu_memory_gib must be a number > 0 (or null), got {g!r}")
        return problems


@dataclass
class RunConfig:
    """One continual instruction-tuning experiment."""

    name: str | None = None
    seed: int = 0  # 0 .. MAX_SEED (4294966): stage j seeds numpy with seed * 1000 + j
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
    dist: DistConfig = field(default_factory=DistConfig)

    def check(self) -> list[str]:
        problems = []
        if self.name is not None and not _plain_name(self.name):
            problems.append(f"name must be a plain folder name (no '/', '\\', '..' or leading '.'; it names "
                            f"runs/<name>), got {self.name!r}")
        problems += _within(self, "seed", 0, MAX_SEED)
        return problems

    def to_dict(self) -> dict:
        """The config as plain data, the open sections' own keys beside their common ones (as users write them)."""
        return flat_dict(self)


def _yaml_problem(e: BaseException) -> str:
    """A YAML error on one line: ``expected ',' or ']', but got '<stream end>' at line 1, column 3``."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = getattr(e, "context", None)
        return f"{problem}{where}" + (f" ({context})" if context else "")
    return " ".join(str(e).split())


def _set_error(problem: str) -> ConfigError:
    return ConfigError([problem], line=f"invalid config: {problem}")


def parse_overrides(items: list[str]) -> dict:
    """``["train.lr=1e-4", "tasks.order=[GQA, VizWiz]"]`` -> a nested dict (values parsed as YAML).

    A malformed item is a one-line ``ConfigError`` naming its key: no ``=``, an empty key part, a
    value that is not valid YAML, or a key below one another ``--set`` gave a plain value.
    """
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise _set_error(f"--set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise _set_error(f"--set {item!r}: the key {key!r} has an empty part")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, RecursionError) as e:
            shown = raw if len(raw) <= 60 else raw[:57] + "..."
            raise _set_error(f"--set {key}: the value {shown!r} is not valid YAML: {_yaml_problem(e)}") from None
        node = out
        for k, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                above = ".".join(parts[: k + 1])
                raise _set_error(f"--set {key}: another --set gave {above} a value ({node!r}), not a mapping")
        node[parts[-1]] = value
    return out


def _unset(data: dict, key: str) -> dict:
    """A copy of ``data`` without the dotted ``key``; a ``ConfigError`` naming it when it is not there."""
    parts = key.split(".")
    if not all(parts):
        raise _set_error(f"~{key}: the key has an empty part")
    out = dict(data)
    node = out
    for k, part in enumerate(parts[:-1]):
        child = node.get(part)
        if not isinstance(child, dict):
            break
        node[part] = node = dict(child)
    else:
        if parts[-1] in node:
            del node[parts[-1]]
            return out
    raise _set_error(f"~{key}: the config does not set {key}, so there is nothing to unset (its default applies)")


def apply_overrides(data: dict, items: list[str]) -> dict:
    """``data`` with the command line's overrides applied in order: ``key=value`` sets a key (the value
    parsed as YAML, as ``--set`` does), ``~key`` removes one the config file set, so that its default
    applies (Hydra's habit: ``~model.lm_path`` when switching a config to a backbone without that option)."""
    out = data
    pending: list[str] = []
    for item in items:
        if item.startswith("~"):
            if pending:
                out, pending = merge(out, parse_overrides(pending)), []
            key = item[1:].strip()
            if "=" in key:
                raise _set_error(f"{item!r}: ~KEY takes no value (it removes the key; KEY=VALUE sets one)")
            out = _unset(out, key)
        else:
            pending.append(item)
    return merge(out, parse_overrides(pending)) if pending else out


def merge(base: dict, over: dict) -> dict:
    """Recursively merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_text(p: Path) -> str:
    """A UTF-8 config file (a UTF-8 BOM accepted); a one-line ``ConfigError`` naming the file otherwise.

    The YAML twin of ``coin.io.read_text`` (this module imports nothing of coin but the options builder).
    """
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"cannot read: {e.strerror}"], str(p), line=f"{p}: cannot read ({e.strerror})") from None
    head = data[:4096]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\0" in head and head.count(b"\0") * 4 >= len(head)):
        problem = "not UTF-8 (looks like UTF-16); re-save as UTF-8"
    else:
        skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        try:
            return data[skip:].decode("utf-8")
        except UnicodeDecodeError as e:
            problem = f"not valid UTF-8 at byte {e.start + skip}; re-save as UTF-8"
    raise ConfigError([problem], str(p), line=f"{p}: {problem}")


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); ``ConfigError`` naming the file otherwise.

    UTF-8 only (a BOM is accepted); an encoding or YAML error is one line naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{what} {p} does not exist"], str(path))
    text = _read_text(p)
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as e:
        problem = f"not valid YAML: {_yaml_problem(e)}"
        raise ConfigError([problem], str(path), line=f"{path}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(["the top level must be a mapping"], str(path))
    return data


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what a run folder stores)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
