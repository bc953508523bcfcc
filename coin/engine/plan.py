"""``coin run --dry-run``: what a run will do, without loading a model or reading images.

Stages, training steps per stage, effective batch, adapter, and every file the run will
read, each marked present or missing, so a 3-day GPU job is checked in a second.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from coin.config import RunConfig
from coin.data.orders import resolve_order
from coin.tasks import get_task


def _count(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return len(data) if isinstance(data, list) else None
    except (OSError, ValueError):
        return None


def describe(cfg: RunConfig, out: Path) -> tuple[str, list[str]]:
    """The plan as text, and the list of missing files."""
    from coin.data.benchmark import FAMILY_DIRS, _override

    order = resolve_order(cfg.tasks.order)
    world = int(os.environ.get("WORLD_SIZE", 1))
    eff = cfg.train.batch_size * cfg.train.grad_accum * world
    a = cfg.adapter
    adapter = f"{a.type} r={a.r} alpha={a.alpha:g}" + (f" experts={a.experts}" if a.type == "moelora" else "")
    model = cfg.model.name + (f" ({cfg.model.path})" if cfg.model.path else "")
    lines = [f"run folder: {out}", f"model: {model}", f"method: {cfg.method} {cfg.method_options or ''}".rstrip(),
             f"adapter: {adapter}; projector trained: {a.train_projector}",
             f"effective batch: {eff} = {cfg.train.batch_size} x grad_accum {cfg.train.grad_accum} x {world} process(es)",
             f"schedule: lr {cfg.train.lr:g}, cosine, warm-up {cfg.train.warmup_ratio:.0%}, {cfg.train.epochs:g} epoch(s), "
             f"{cfg.train.precision}", f"instructions: {cfg.data.instructions}; volume {cfg.data.volume:g}", ""]
    missing: list[str] = []
    if cfg.data.benchmark == "synth":
        s = cfg.data.synth
        lines.append(f"data: CoIN-Synth (seed {s.seed}), generated into the cache on first use")
        counts = {t: (s.n_train, s.n_test) for t in order}
        files = {}
    else:
        root = Path(cfg.data.root or ".").expanduser()
        image_root = Path(cfg.data.image_root).expanduser() if cfg.data.image_root else root
        lines.append(f"data root: {root}{'' if root.is_dir() else '  (MISSING)'}")
        lines.append(f"image root: {image_root}{'' if image_root.is_dir() else '  (MISSING)'}")
        if not root.is_dir():
            missing.append(str(root))
        counts, files = {}, {}
        for t in order:
            for split in ("train", "test"):
                p = _override(root, cfg.data, t, split)
                if p is None:
                    dirs = FAMILY_DIRS.get(cfg.data.instructions, FAMILY_DIRS["original"])
                    cands = [root / d / get_task(t).folder / f"{split}.json" for d in dirs]
                    p = next((c for c in cands if c.is_file()), cands[0])
                files[(t, split)] = p
                if not p.is_file():
                    missing.append(str(p))
            counts[t] = tuple(_count(files[(t, sp)]) if files[(t, sp)].is_file() else None for sp in ("train", "test"))
    lines.append("")
    lines.append(f"{'stage':<6}{'task':<11}{'train':>8}{'steps':>7}{'test':>7}  files")
    for j, t in enumerate(order, 1):
        n_train, n_test = counts[t]
        if n_train is not None:
            n_train = max(1, round(n_train * cfg.data.volume))
        steps = math.ceil(n_train * cfg.train.epochs / eff) if n_train else None
        where = ""
        if files:
            where = "  ".join(f"{files[(t, sp)]}{'' if files[(t, sp)].is_file() else ' (MISSING)'}" for sp in ("train", "test"))
        fmt = lambda v: "?" if v is None else str(v)  # noqa: E731
        lines.append(f"{j:<6}{t:<11}{fmt(n_train):>8}{fmt(steps):>7}{fmt(n_test):>7}  {where}")
    evals = "the tasks seen so far" if cfg.tasks.eval == "seen" else "every task"
    lines.append(f"\nafter each stage: evaluate {evals}" + ("; zero-shot row first" if cfg.eval.zero_shot else ""))
    if cfg.model.path and not Path(cfg.model.path).expanduser().exists() and "/" not in cfg.model.path.strip("/"):
        missing.append(cfg.model.path)
    if missing:
        lines.append(f"\nMISSING ({len(missing)}):\n  " + "\n  ".join(missing))
    return "\n".join(lines), missing
