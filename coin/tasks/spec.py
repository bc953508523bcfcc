"""What a CoIN task is: its spec, the registry of tasks, and the one call a task file makes.

A task is one file (``coin/tasks/<task>.py``, or a plugin's own file) that builds a
``TaskSpec`` and registers it: ``SPEC = TASKS.register(TaskSpec(name=..., folder=..., ...))``
(keyword-only; ``TASKS`` checks the spec first, ``TaskSpec.check``). The spec carries
everything coin needs to know about the task: where its files are, how its answers look and
are scored (its protocols), its short name for narrow columns, and its format-instruction
line in each instruction family. The same names serve the real benchmark and CoIN-Synth, so a run
switches between them by changing only the data root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from coin.scoring.protocol import Protocol
from coin.scoring.scorers import SCORERS
from coin.registry import Registry

__all__ = ["ANSWER_FORMS", "TASKS", "TaskSpec", "Template", "get_task", "register_task"]

ANSWER_FORMS = ("letter", "phrase", "class", "box")


@dataclass(frozen=True)
class Template:
    """One format-instruction line.

    ``ours`` marks a string not taken from the paper; ``fallback`` marks a task's Original
    line standing in for a family that has no line of its own for the task (a plugin task
    that only gives its Original line), so a report can say which prompts are not the
    family's.
    """

    text: str
    ours: bool = False
    fallback: bool = False


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A CoIN task, declared by keyword (``TaskSpec(name="VQAv2", folder="VQAv2", ...)``).

    ``instruction`` is the Original (Type1) format-instruction line; for Grounding it has
    a ``{}`` where the referring expression goes. ``folder`` is the task's directory in
    the released layout (``Instructions_Original/<folder>/{train,test}.json``).
    ``max_new_tokens`` is the floor of the task's generation limit: a run sizes the limit
    from the task's training answers in the model's tokens (``coin.engine.limits``), never
    below this, so a letter keeps 4 tokens and a box 32 while long titles get more.

    ``abbreviation`` is the short name for narrow table columns and axis ticks (empty: the
    name's first letters). ``protocols`` are the ways the task is scored, ``paper`` first
    (empty: its ``scorer`` as ``paper``; see ``coin.tasks.protocol_sets``). ``instructions`` maps
    an instruction family's name (``diverse``, ``10type``) to the task's lines in that
    family; the Original family's line is ``instruction``, and a family without a line
    here falls back to it (``coin.tasks.instructions``). ``doc`` is a line for ``coin ls``.

    ``test_files`` are the names the task's test file may have in its folder, tried in order
    (``coin.benchmarks.coin.benchmark``): the original read TextVQA, VizWiz and VQAv2 from ``val.json``
    and the other five from ``test.json``. The training file is always ``train.json``.
    """

    name: str
    folder: str
    answer_form: str  # "letter" | "phrase" | "class" | "box"
    scorer: str
    instruction: str
    max_new_tokens: int  # the floor of the generation limit (see above)
    abbreviation: str = ""
    protocols: tuple[Protocol, ...] = ()
    instructions: Mapping[str, tuple[Template, ...]] = field(default_factory=dict, hash=False)
    doc: str = ""
    test_files: tuple[str, ...] = ("test.json",)

    def __post_init__(self) -> None:
        # a plugin may write plain strings and lists; keep the spec's own shape (tuples of Template)
        lines = {str(f): tuple(t if isinstance(t, Template) else Template(str(t)) for t in ts)
                 for f, ts in dict(self.instructions).items()}
        object.__setattr__(self, "instructions", lines)
        object.__setattr__(self, "protocols", tuple(self.protocols))
        names = (self.test_files,) if isinstance(self.test_files, str) else self.test_files
        object.__setattr__(self, "test_files", tuple(names) if isinstance(names, (list, tuple)) else names)

    def split_files(self, split: str) -> tuple[str, ...]:
        """The file names ``split`` ("train" or "test") may have in the task's folder, most likely first."""
        return ("train.json",) if split == "train" else self.test_files

    def check(self) -> list[str]:
        """Problems with this declaration, each naming its field (empty when the spec is usable)."""
        problems = []
        if not self.name or not self.folder:
            problems.append("name and folder must be non-empty")
        if self.answer_form not in ANSWER_FORMS:
            problems.append(f"answer_form must be one of {', '.join(ANSWER_FORMS)}, got {self.answer_form!r}")
        if self.scorer not in SCORERS:
            problems.append(f"scorer: {SCORERS.unknown_message(self.scorer)}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        slots = self.instruction.count("{}")
        if not self.instruction.strip() or "\n" in self.instruction or slots > 1:
            problems.append(f"instruction must be one non-empty line with at most one '{{}}', got {self.instruction!r}")
        if "original" in self.instructions:
            problems.append("instructions.original: the Original line is `instruction`; give only the other families")
        for family, ts in self.instructions.items():
            if not ts:
                problems.append(f"instructions.{family}: no lines (leave the family out to fall back to Original)")
            for t in ts:
                if "\n" in t.text or t.text.strip() != t.text or t.text.count("{}") != slots:
                    problems.append(f"instructions.{family}: {t.text!r} must be one trimmed line with "
                                    f"{slots} '{{}}' like `instruction`")
        if not self.test_files or not all(isinstance(n, str) and n.endswith(".json") and "/" not in n
                                          and "\\" not in n for n in self.test_files):
            problems.append(f"test_files must be file names ending in .json (no folder), got {self.test_files!r}")
        names = [p.name for p in self.protocols]
        if names and names[0] != "paper":
            problems.append(f"protocols: the first must be 'paper', got {names[0]!r}")
        if len(set(names)) != len(names):
            problems.append(f"protocols: a name is declared twice in {names}")
        for p in self.protocols:
            problems += [f"protocols.{p.name}.{q}" for q in p.check()]
        return problems


TASKS: Registry[TaskSpec] = Registry("task", builtins=("coin.benchmarks",),  # each benchmark folder's tasks
                                     check=TaskSpec.check)


def register_task(spec: TaskSpec) -> TaskSpec:
    """Deprecated (0.x): use ``TASKS.register(spec)``, which checks ``spec`` the same way."""
    import warnings

    warnings.warn("register_task(spec) is deprecated; use TASKS.register(spec)", DeprecationWarning, stacklevel=2)
    return TASKS.register(spec)


def get_task(name: str) -> TaskSpec:
    """The task registered as ``name`` (an unknown name lists the choices)."""
    return TASKS.get(name)
