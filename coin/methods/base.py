"""The continual-learning method interface: hooks that return values around one training loop.

A method never reaches into the engine. The loop asks it, at fixed points, for what it
contributes: the data to train a task on (replay), extra loss terms per batch (EWC, LwF),
work before and after a task (Fisher estimation, teacher logits), and what to save with a
stage so a resumed run continues exactly. Methods compose as a list.

Each method is one file: a ``Method`` subclass with its ``name``, decorated ``@METHODS.register``.
``Method`` itself is ``sequential``. ``METHODS`` lives here so a method file needs only this module;
its built-in entries are registered by importing ``coin.methods`` (on the first lookup).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from coin.options import NoOptions, option_problems, parse
from coin.registry import Registry

if TYPE_CHECKING:
    from coin.models.backbone import VLM


OPTIONS_KEY = "method_options."  # where a run config holds the method's own keys

METHODS: Registry[type[Method]] = Registry("method", builtins=("coin.methods",))  # each method's own file


@dataclass
class StageContext:
    """What a hook may look at: the model, the stage and the run, read-only by convention."""

    vlm: VLM  # the backbone's wrapper (coin.models.backbone.VLM); its .model is the PEFT-wrapped model
    task: str
    stage: int  # 0-based index in the task order
    tasks: list[str]
    train_data: dict[str, list] = field(default_factory=dict)  # task -> training samples, for tasks seen so far
    run_dir: Path | None = None
    seed: int = 0
    # set by the training loop before each ``loss`` call: the micro-batch's index in the stage's
    # stream (step x micro-batches per step + its place in the step, counted over all processes),
    # so a hook that cycles through stored data gives the same sequence after a resume and
    # under any number of processes
    micro: int = 0


@METHODS.register
class Method:
    """Sequential fine-tuning: every hook is the identity. Subclasses override what they need.

    What a subclass declares besides its hooks (class attributes, with these defaults):

    - ``name``: the name it registers under and a config's ``method`` gives;
    - ``Options``: a dataclass of its ``method_options`` keys and defaults;
    - ``supports_fsdp``: ``True`` runs under ``dist.strategy fsdp``, ``False`` is refused there
      (``fsdp_refusal`` says why), ``None`` (the default) leaves it to which model hooks the
      method overrides (``coin.engine.fsdp.refusal``: one that only changes the data runs);
    - ``final_row_only``: only the last row of its accuracy matrix is the method's model (multi-task),
      so a report shows ACC alone.
    """

    name = "sequential"
    Options: type = NoOptions  # a dataclass: the method's ``method_options`` keys and defaults
    supports_fsdp: bool | None = None  # None: decided by which MODEL_HOOKS it overrides (coin.engine.fsdp)
    fsdp_refusal: str = ""  # why it cannot run under FSDP, when supports_fsdp is False
    final_row_only: bool = False  # for reports: only the last row of the matrix is this method's result

    def __init__(self, options: dict | None = None) -> None:
        self.options = dict(options or {})
        self.opts = parse(self.Options, self.options, OPTIONS_KEY, what="method options")

    @classmethod
    def validate(cls, options: dict | None, prefix: str = OPTIONS_KEY) -> list[str]:
        """Every problem with ``options`` (unknown keys, types, values), each naming its full key.

        ``coin.options`` builds ``Options`` and runs its ``check()``, as for every other entry's options.
        """
        name = cls.__dict__.get("name") or cls.__name__  # its own name, not one inherited from a base method
        takes = f"; {cls.Options.__name__} takes"  # said of the method users name, not of its options class
        return [p.replace(takes, f"; method {name!r} takes") for p in option_problems(cls.Options, options, prefix)]

    def before_task(self, ctx: StageContext) -> None:
        """Called before training ``ctx.task``."""

    def train_data(self, ctx: StageContext, samples: list) -> list:
        """The samples to train this task on (replay mixes memories in)."""
        return samples

    def loss(self, ctx: StageContext, batch: dict, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        """The loss to back-propagate for one batch (regularisers add their terms)."""
        return loss

    def last_terms(self) -> dict[str, float]:
        """The extra loss terms the last ``loss`` call added, by name (e.g. ``{"penalty": 0.3}``), for logging.

        Optional: the training loop logs them beside the loss; ``{}`` when a method adds none.
        """
        return getattr(self, "_terms", {})

    def after_task(self, ctx: StageContext) -> None:
        """Called after training ``ctx.task``, before its evaluation."""

    def eval_model(self, ctx: StageContext, vlm: VLM) -> VLM:
        """The model to evaluate stage ``ctx.stage`` with: ``vlm`` itself, or a wrapper around it.

        A method that routes each test input to its own adapters without a task id (DISCO,
        HiDe-LLaVA) returns a wrapper whose ``generate`` sets the routing for the batch
        (``coin.adapters.routing``). Called before every evaluation, also when a resumed run
        evaluates a stage trained earlier.
        """
        return vlm

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to save with the stage (safetensors), restored by ``load_state_dict``.

        A resumed run loads the state of every finished stage, in order, so a method whose state
        is large may save only what the stage added and accumulate it in ``load_state_dict``.
        """
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what ``state_dict`` returned."""

    def restore(self, vlm: VLM) -> None:
        """Put back on the model what the loaded state holds beyond the adapter's own weights.

        A resumed run loads every finished stage in order (its adapter, then each method's
        ``load_state_dict``) and calls this after each; e.g. a method that merged its LoRA into
        the base weights writes the merged weights back here. Must give the same model however
        many times it is called. Default: nothing (the adapter is all there is).
        """

    @classmethod
    def check_run(cls, cfg: Any) -> list[str]:
        """Problems running this method under ``cfg`` (a whole ``RunConfig``), each naming its key.

        Checked with the config, before any data or weights load (``coin run --dry-run`` too):
        e.g. a method that merges LoRA into the base weights refuses ``adapter.type: moelora``.
        """
        return []

    def params_added_per_task(self, vlm: VLM) -> int:
        """Parameters the model gains per task (the cost table): 0 for methods that reuse one adapter."""
        return 0


def sample_indices(n: int, k: int, seed: int, *tags: object) -> list[int]:
    """``min(k, n)`` sorted indices out of ``range(n)``, the same for the same seed and tags.

    The generator is seeded from a string (stable across processes, unlike ``hash``), so a
    method's choice of samples for a task does not depend on what ran before it.
    """
    rng = random.Random(":".join(map(str, (seed, *tags))))
    return sorted(rng.sample(range(n), min(k, n)))
