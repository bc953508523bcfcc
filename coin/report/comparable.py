"""Which runs may be set side by side: like with like, their seeds apart.

A comparison's row, and a finding's group, pools runs as seeds of one experiment, and sets those
experiments side by side. That means something only for runs made the same way: the same tasks, the
same data (its benchmark, sizes and instruction family), the same recipe (``train.*``, ``adapter.*``,
``model.*``) and the same evaluation (``tasks.eval``, ``eval.*``, the scoring protocol). What may differ:

- the seeds: ``seed``, and CoIN-Synth's data seed ``data.synth.seed`` (``coin sweep --data-seeds``);
- what names or places a run and never changes a number: ``name``, ``out_dir``..., ``plugins`` (what
  they register is named by the keys that use it), telemetry (``log.*``) and ``OPERATIONAL``;
- between experiments, the method: ``method``, ``method_options.*``, and the adapter's ``type`` and its
  own keys (MoELoRA's ``experts``: one of CoIN's methods is an adapter), but not the keys every adapter
  shares (``adapter.r``, ``alpha``, ``dropout``, ``train_projector``);
- or, with the method fixed, one studied variable: ``coin report`` takes the keys of one config section
  (the rank and its alpha, the task order, the volume), as its study section does; ``coin findings``
  names each finding's own (``coin.findings.Finding.varies``);
- and the keys a user names (``coin report --allow-diff eval.zero_shot``: the zeroshot method's LLaVA
  config skips the separate zero-shot stage), which the comparison then lists with their values.

A ``Setup`` is what of one run must match; ``comparison_problems`` and ``study_problems`` say, key by key,
where the runs differ when they must not (``coin.errors.IncomparableRuns`` carries the lines). A run
folder without ``config.yaml`` is compared by its tasks alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

from coin.config import AdapterConfig

__all__ = ["OPERATIONAL", "TASK_SET", "Setup", "comparison_problems", "defining", "differing", "is_method_key",
           "study_problems", "varies_data"]

SEED_KEYS = ("seed", "data.synth.seed")
NAMING_KEYS = ("name", "run_name", "out_dir", "output_dir", "run_dir", "resume", "plugins", "log")  # top level
# keys that change how a run works, never its numbers: coin.engine.run_folder.OPERATIONAL_KEYS (which imports
# torch; tests/test_comparable.py keeps the two in step)
OPERATIONAL = ("data.check_images", "data.max_image_pixels", "train.num_workers", "log.trackers", "log.project",
               "eval.share_prefix", "eval.cache_vision", "dist.gpu_memory_gib", "train.checkpoint_async",
               "train.checkpoint_minutes")
TASK_SET = "the task set"  # a Setup's key beside the config's: the tasks, sorted (tasks.order: as they ran)
_ADAPTER_COMMON = {f.name for f in fields(AdapterConfig)} - {"options", "type"}
_SHOWN = 3  # runs named per value in a message; the rest counted


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def _exempt(key: str) -> bool:
    return key in SEED_KEYS or key in OPERATIONAL or key.split(".", 1)[0] in NAMING_KEYS


def defining(config: dict) -> dict:
    """``config`` (nested) without the keys that may differ between repetitions of one experiment: the seeds,
    naming, telemetry and the operational keys. Runs whose ``defining`` configs are equal share a row."""
    def keep(obj: Any, prefix: str) -> Any:
        if not isinstance(obj, dict):
            return obj
        return {k: keep(v, f"{prefix}{k}.") for k, v in obj.items() if not _exempt(f"{prefix}{k}")}

    return keep(config, "")


def is_method_key(key: str) -> bool:
    """``method``, ``method_options.*``, ``adapter.type`` and an adapter's own keys (``adapter.experts``)."""
    if key == "method" or key.startswith("method_options."):
        return True
    if key.startswith("adapter."):
        return key.split(".")[1] not in _ADAPTER_COMMON
    return False


@dataclass(frozen=True)
class Setup:
    """What of one run must match another's: its config's defining keys, flat, and its tasks."""

    label: str  # the run as messages name it (its folder)
    keys: dict[str, Any]  # dotted key -> value; TASK_SET and tasks.order (the order it ran) always
    known: bool  # False: no config.yaml; only the tasks are known
    data_seed: Any = None  # CoIN-Synth's data.synth.seed; None: the benchmark's own files (or unknown)

    @classmethod
    def of(cls, label: str, config: dict | None, tasks: Sequence[str]) -> Setup:
        """From a run's config (upgraded to today's keys: ``coin.report.load.upgraded``) and the tasks it ran."""
        keys = {k: v for k, v in _flat(config or {}).items() if not _exempt(k)}
        keys.update({TASK_SET: sorted(tasks), "tasks.order": list(tasks)})
        synth = bool(config) and (config.get("data") or {}).get("benchmark", "synth") == "synth"
        seed = ((config.get("data") or {}).get("synth") or {}).get("seed", 0) if synth else None
        return cls(label, keys, bool(config), seed)


def _differences(setups: Sequence[Setup]) -> dict[str, list[tuple[Any, list[str]]]]:
    """Per key whose value differs: (value, the runs that have it), rarest value first."""
    known = [s for s in setups if s.known]
    keys = sorted(set().union(*(s.keys for s in known))) if known else []
    out = {}
    for key in [TASK_SET, "tasks.order", *(k for k in keys if k not in (TASK_SET, "tasks.order"))]:
        values: list[tuple[Any, list[str]]] = []
        for s in setups if key in (TASK_SET, "tasks.order") else known:
            v = s.keys.get(key)
            same = next((p for p in values if p[0] == v and isinstance(p[0], bool) == isinstance(v, bool)), None)
            if same is None:
                values.append((v, [s.label]))
            else:
                same[1].append(s.label)
        if len(values) > 1:
            out[key] = sorted(values, key=lambda p: (len(p[1]), sorted(p[1])[0]))
    if TASK_SET in out:
        out.pop("tasks.order", None)  # another list is another order too: one line says it
    return out


def _line(key: str, values: list[tuple[Any, list[str]]]) -> str:
    def runs(labels: list[str]) -> str:
        labels = sorted(labels)
        more = f", +{len(labels) - _SHOWN} more" if len(labels) > _SHOWN else ""
        return ", ".join(labels[:_SHOWN]) + more

    return f"{key}: " + " vs ".join(f"{v!r} ({runs(labels)})" for v, labels in values)


def _section(key: str) -> str:
    return key.rsplit(".", 1)[0]


def _under(key: str, keys: Sequence[str]) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def comparison_problems(setups: Sequence[Setup], allow: Sequence[str] = ()) -> list[str]:
    """Why ``coin report`` may not set these runs side by side (empty: it may); the keys under ``allow``
    may differ too. Each problem is one string, its differing keys on lines of their own."""
    diffs = {k: v for k, v in _differences(setups).items() if not _under(k, allow)}
    problems = []
    if TASK_SET in diffs:
        problems.append("they ran other tasks: " + _line(TASK_SET, diffs.pop(TASK_SET)))
    method = [k for k in diffs if is_method_key(k)]
    rest = {k: v for k, v in diffs.items() if not is_method_key(k)}
    lines = "".join(f"\n      {_line(k, v)}" for k, v in rest.items())
    if rest and method:
        problems.append(f"they differ in the method ({', '.join(method)}) and also in {', '.join(rest)}: "
                        "compare methods at one recipe, or one variable at one method" + lines)
    elif len({_section(k) for k in rest}) > 1:
        problems.append(f"they differ in more than one variable ({', '.join(sorted({_section(k) for k in rest}))}); "
                        "a study varies the keys of one section" + lines)
    return problems


def study_problems(setups: Sequence[Setup], varies: Sequence[str] = ()) -> dict[str, str]:
    """The keys in which ``setups`` differ besides the keys under ``varies`` (``"adapter.r"``, ``"model"``),
    each with its line: the values and their runs (empty: like with like)."""
    return {k: _line(k, v) for k, v in _differences(setups).items() if not _under(k, varies)}


def differing(setups: Sequence[Setup], keys: Sequence[str]) -> list[str]:
    """The keys under ``keys`` in which ``setups`` differ, one line each with the values and their runs."""
    return [_line(k, v) for k, v in _differences(setups).items() if _under(k, keys)]


def varies_data(setups: Sequence[Setup]) -> bool | None:
    """Whether these runs (seeds of one experiment) drew different CoIN-Synth data; None: some run's
    config is unknown."""
    if not all(s.known for s in setups):
        return None
    return len({repr(s.data_seed) for s in setups}) > 1
