"""``coin export``: keep the small files of a sweep's finished runs, so that its tables can be written again.

A sweep folder (``coin sweep --out``) holds ``<config>-s<seed>`` run folders, with weights, predictions and
logs that do not belong in git. ``export(src, out)`` copies, for each run, the files the tables and the
findings are made from (``KEPT``: ``matrix.json``, the resolved ``config.yaml``, ``env.json`` and its history,
``reused-from.json`` and each stage's ``routing.json``) to the same place under ``out``.

It copies a configuration only when all its seeds are finished: the seeds a configuration should have are
``seeds`` when given, else every seed found beside it (the union over the configurations of its folder), and
a run is finished when its every stage is ``DONE`` and its ``matrix.json`` is written (``coin status``). A
configuration with a seed missing or unfinished is left out and named, so that a table made from ``out``
never tests half a study. ``src`` may be one sweep folder or a folder of them (``runs/studies``): each run
keeps its path below ``src``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from coin.errors import OptionsError
from coin.io import atomic_write_bytes

__all__ = ["KEPT", "RUN", "Export", "export"]

KEPT = ("matrix.json", "config.yaml", "env.json", "env-history.jsonl", "reused-from.json")  # beside stages/*/routing.json
RUN = re.compile(r"^(?P<config>.+)-s(?P<seed>\d+)$")  # the name coin sweep gives a run: <config>-s<seed>


@dataclass
class Export:
    """What ``export`` did: the configurations copied (``folder/config`` -> seeds), and those left out with why."""

    copied: dict[str, list[int]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    files: int = 0

    def summary(self, out: str | os.PathLike) -> str:
        lines = [f"copied {len(self.copied)} configurations ({sum(map(len, self.copied.values()))} runs, "
                 f"{self.files} files) to {out}"]
        lines += [f"  left out {name}: {why}" for name, why in self.left_out.items()]
        return "\n".join(lines)


def _runs(src: Path) -> Iterable[Path]:
    """The run folders under ``src``: ``<config>-s<seed>`` folders with a ``config.yaml``, not inside a run."""
    for folder, dirs, files in os.walk(src):
        here = Path(folder)
        if RUN.match(here.name) and "config.yaml" in files:
            dirs.clear()  # a run's own folders (stages, report) hold no runs
            yield here
        dirs.sort()


def _unfinished(run: Path) -> str | None:
    """Why ``run`` is not a finished run ("not finished", or the error that reading it raised); None if it is."""
    from coin.engine.status import run_status

    try:
        return None if run_status(run)["finished"] else "not finished"
    except Exception as e:  # a damaged config or stage file: named, not kept
        return f"unreadable ({type(e).__name__}: {e})"


def _seeds(seeds: list[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def export(src: str | os.PathLike, out: str | os.PathLike, seeds: Iterable[int] | None = None) -> Export:
    """Copy the kept files of every configuration under ``src`` whose seeds are all finished to ``out``."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"coin export: {src} is not a folder")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise OptionsError([f"--out {out} lies inside {src}: give a folder outside it"], what="coin export options")
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for run in _runs(src):
        m = RUN.match(run.name)
        groups.setdefault((run.parent.relative_to(src), m["config"]), {})[int(m["seed"])] = run
    if not groups:
        raise FileNotFoundError(f"coin export: no run folders (<config>-s<seed> with a config.yaml) under {src}")
    want: dict[Path, set[int]] = {}
    for (folder, _), runs in groups.items():
        want.setdefault(folder, set()).update(runs)
    result = Export()
    for (folder, config), runs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        name = (folder / config).as_posix()
        expected = sorted(seeds) if seeds is not None else sorted(want[folder])
        missing = [s for s in expected if s not in runs]
        states: dict[str, list[int]] = {}  # why a seed's run is not kept -> those seeds
        for s in expected:
            if s in runs and (why := _unfinished(runs[s])):
                states.setdefault(why, []).append(s)
        if missing or states:
            why = [f"no run folder for {_seeds(missing)}"] if missing else []
            result.left_out[name] = "; ".join(why + [f"{_seeds(ss)} {w}" for w, ss in states.items()])
            continue
        for seed in expected:
            run = runs[seed]
            kept = [run / n for n in KEPT if (run / n).is_file()] + sorted(run.glob("stages/*/routing.json"))
            for path in kept:
                atomic_write_bytes(out / path.relative_to(src), path.read_bytes())
            result.files += len(kept)
        result.copied[name] = expected
    return result
