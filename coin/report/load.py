"""Reading a run folder for a report: ``matrix.json`` checked for shape, ``config.yaml`` as a mapping.

Every report (one run's, a comparison, the terminal summary) starts here, so a malformed
file is refused once, with the file's path and every problem, before any figure is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from coin.io import read_json
from coin.metrics import summarize

__all__ = ["config_value", "load_matrix_json", "load_run", "run_metrics", "upgraded"]


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_square(name: str, m: Any, t: int, errors: list[str]) -> None:
    if not isinstance(m, list) or len(m) != t:
        errors.append(f"{name} must be a list of {t} rows")
        return
    for j, row in enumerate(m):
        if not isinstance(row, list) or len(row) != t or not all(v is None or _is_num(v) for v in row):
            errors.append(f"{name}[{j}] must be a list of {t} numbers or nulls")


def load_matrix_json(path: str | os.PathLike) -> dict:
    """Read ``matrix.json`` and check its shape; errors name the file and every problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no matrix.json here (has the run finished a stage?)")
    mj = read_json(path)
    if not isinstance(mj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(mj).__name__}")
    errors: list[str] = []
    tasks = mj.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ValueError(f"{path}: 'tasks' must be a non-empty list of task names")
    t = len(tasks)
    _check_square("matrix", mj.get("matrix"), t, errors)
    zs = mj.get("zero_shot")
    if zs is not None and not (isinstance(zs, list) and len(zs) == t and all(v is None or _is_num(v) for v in zs)):
        errors.append(f"zero_shot must be null or a list of {t} numbers or nulls")
    if mj.get("format_share") is not None:
        _check_square("format_share", mj["format_share"], t, errors)
    for key in ("metrics", "ci", "cost", "strict", "protocol_card"):
        if mj.get(key) is not None and not isinstance(mj[key], dict):
            errors.append(f"{key} must be null or an object")
    if isinstance(mj.get("strict"), dict):
        _check_square("strict.matrix", mj["strict"].get("matrix"), t, errors)
    if errors:
        raise ValueError(f"{path}: malformed: " + "; ".join(errors))
    return mj


def load_run(run_dir: str | os.PathLike) -> tuple[dict, dict]:
    """The checked ``matrix.json`` and the ``config.yaml`` (empty when absent) of a run folder."""
    run_dir = Path(run_dir)
    mj = load_matrix_json(run_dir / "matrix.json")
    cfg_path = run_dir / "config.yaml"
    config: Any = {}
    if cfg_path.is_file():
        try:
            config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{cfg_path}: not valid YAML ({e})") from None
        if not isinstance(config, dict):
            raise ValueError(f"{cfg_path}: expected a mapping at the top level")
    return mj, config


def run_metrics(mj: dict) -> dict:
    """The stored metrics, with any key that is absent recomputed from the matrix.

    A key stored as null stays null: the run said it is not meaningful (e.g. MAA of multi-task).
    """
    computed = summarize(mj["matrix"], zero_shot=mj.get("zero_shot"))
    return {**computed, **(mj.get("metrics") or {})}


def config_value(config: dict, dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``, or None when any part is missing."""
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def upgraded(config: dict) -> dict:
    """A run folder's stored config with today's defaults filled in (``coin.config_load.upgrade``).

    A run made before a key existed then reads, and groups in a comparison, like today's runs;
    an empty config (no ``config.yaml``) stays empty.
    """
    if not config:
        return {}
    from coin.config_load import upgrade

    return upgrade(config)
