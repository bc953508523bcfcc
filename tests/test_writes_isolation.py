"""Nothing is written outside the run folder, the cache and the paths the user named.

A micro run, its report and ``coin status`` run in a fresh process whose ``HOME``, working
directory and ``TMPDIR`` are empty temporary folders and whose ``XDG_*`` and library cache
variables are unset, so a library that writes to ``~/.cache``, ``~/.config``, the working
directory or the temp folder shows up here. Every file created anywhere under those folders
is listed; only the run folder and ``COIN_CACHE`` may hold any.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import coin

pytestmark = pytest.mark.slow

_CLEARED = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HF_HOME", "HF_DATASETS_CACHE",
            "TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE", "TORCH_HOME", "MPLCONFIGDIR", "TRITON_CACHE_DIR",
            "PYTHONPYCACHEPREFIX")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def test_a_run_and_its_report_write_only_the_run_folder_and_the_cache(tmp_path, micro_config):
    home, cwd, tmp, cache, out = (tmp_path / n for n in ("home", "cwd", "tmp", "cache", "run"))
    for d in (home, cwd, tmp):
        d.mkdir()
    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump(micro_config))
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(HOME=str(home), TMPDIR=str(tmp), COIN_CACHE=str(cache), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(Path(coin.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]))
    for argv in (["run", "--config", str(cfg), "--out", str(out), "--quiet"],
                 ["report", str(out)],
                 ["status", str(out)]):
        done = subprocess.run([sys.executable, "-m", "coin.cli", *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"coin {argv[0]}: {done.stderr[-3000:]}"
    stray = {"HOME": _files(home), "working directory": _files(cwd), "TMPDIR": _files(tmp)}
    assert stray == {"HOME": [], "working directory": [], "TMPDIR": []}, stray
    assert (out / "matrix.json").is_file() and _files(cache)  # the run did write where it should
    outside = sorted(p.name for p in tmp_path.iterdir())
    assert outside == ["cache", "cwd", "home", "micro.yaml", "run", "tmp"]
