"""Probes of issue #29 point 10: a read-only run folder, a full disk at every write point, a sweep
killed mid-way and two sweeps on one folder. Each ends with one clear line naming the path (exit 2),
nothing lost, and a rerun that finishes with the numbers of a clean run.

Which of these failed on the code before the fix is said on each test; the others guard behaviour
that was already right.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

import coin.io
from coin.cli import main
from coin.config_load import from_dict
from coin.api import run

pytestmark = pytest.mark.slow


def _quiet(*a, **k) -> None:
    return None


def _writer_modules() -> list:
    """Every loaded module holding ``coin.io.atomic_write_bytes`` by name (``from coin.io import ...``)."""
    import coin.engine.matrix, coin.engine.cost, coin.engine.evaluate, coin.tracking  # noqa: E401,F401
    import coin.report.plots, coin.report.run_report, coin.report.compare  # noqa: E401,F401

    orig = coin.io.atomic_write_bytes
    return [m for m in list(sys.modules.values()) if getattr(m, "atomic_write_bytes", None) is orig]


@contextmanager
def _every_write(monkeypatch, wrapper):
    """``wrapper(orig, path, data)`` in place of ``atomic_write_bytes`` wherever it is used."""
    orig = coin.io.atomic_write_bytes
    with monkeypatch.context() as m:
        for mod in _writer_modules():
            m.setattr(mod, "atomic_write_bytes", lambda path, data, _o=orig: wrapper(_o, path, data))
        yield


@pytest.fixture(scope="module")
def finished(tmp_path_factory, micro_factory):
    """A finished micro run folder, the config file it ran from, and the paths its run wrote, in order."""
    root = tmp_path_factory.mktemp("probes")
    cfg = micro_factory()
    cfg_file = root / "micro.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    out = root / "run"
    writes: list[str] = []

    def spy(orig, path, data):
        if Path(path).is_relative_to(out):  # not the cache (CoIN-Synth, the tiny base)
            writes.append(str(Path(path).relative_to(out)))
        return orig(path, data)

    with pytest.MonkeyPatch.context() as mp, _every_write(mp, spy):
        run(from_dict(cfg), out, progress=False, log=_quiet)
    return cfg_file, out, writes


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _matrix(out: Path) -> dict:
    m = json.loads((out / "matrix.json").read_text())
    return {k: m[k] for k in ("matrix", "metrics") if k in m}


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- (a) a read-only run folder


def _under(path, root: Path, dir_fd=None) -> bool:
    if dir_fd is not None and not os.path.isabs(os.fspath(path)):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fspath(path))
    try:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(root)
    except TypeError:  # a file descriptor
        return False


def _denied(path):
    return PermissionError(errno.EACCES, "Permission denied", os.fspath(path))


@contextmanager
def _read_only(root: Path, monkeypatch):
    """``root`` read-only: its tree chmod-ed, and, where that stops nothing (root), every write under it refused
    as the kernel would (open for writing, mkdir, rename, unlink)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    probe = root / ".probe"
    try:
        probe.write_text("x")
        probe.unlink()
        simulate = True  # root: chmod stops no write
    except PermissionError:
        simulate = False
    try:
        with monkeypatch.context() as m:
            if simulate:
                real_open, real_os_open = builtins.open, os.open

                def fake_open(file, mode="r", *a, **k):
                    if any(c in mode for c in "wax+") and _under(file, root):
                        raise _denied(file)
                    return real_open(file, mode, *a, **k)

                def fake_os_open(path, flags, *a, dir_fd=None, **k):
                    writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
                    if writing and _under(path, root, dir_fd):
                        raise _denied(path)
                    return real_os_open(path, flags, *a, dir_fd=dir_fd, **k)

                def refusing(real, exist_error=False):
                    def f(path, *a, dir_fd=None, src_dir_fd=None, dst_dir_fd=None, **k):
                        if _under(path, root, dir_fd or src_dir_fd) or (a and _under(a[0], root, dst_dir_fd)):
                            if exist_error and os.path.exists(path):
                                raise FileExistsError(errno.EEXIST, "File exists", os.fspath(path))
                            raise _denied(path)
                        kw = {n: v for n, v in (("dir_fd", dir_fd), ("src_dir_fd", src_dir_fd),
                                                ("dst_dir_fd", dst_dir_fd)) if v is not None}
                        return real(path, *a, **kw, **k)
                    return f

                m.setattr(builtins, "open", fake_open)
                m.setattr(io, "open", fake_open)
                m.setattr(os, "open", fake_os_open)
                m.setattr(os, "mkdir", refusing(os.mkdir, exist_error=True))
                for name in ("replace", "rename", "unlink", "remove", "rmdir", "chmod"):
                    m.setattr(os, name, refusing(getattr(os, name)))
            yield
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_a_read_only_run_folder_is_named_in_one_line_and_kept(finished, tmp_path, monkeypatch, capsys):
    """Failed before: ``coin report`` and ``coin run`` ended in a PermissionError traceback naming a temp file."""
    cfg_file, src, _ = finished
    ro = _copy(src, tmp_path / "ro")
    before = _snapshot(ro)
    capsys.readouterr()
    with _read_only(ro, monkeypatch):
        assert main(["report", str(ro)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"cannot write {ro}/" in line and "permission denied" in line.lower() and ".tmp" not in line
        assert main(["run", "--config", str(cfg_file), "--out", str(ro), "--quiet"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert str(ro) in line and "permission denied" in line.lower()
    assert _snapshot(ro) == before  # nothing written, nothing removed
    assert sorted(p.name for p in ro.rglob("*.tmp")) == []
    assert main(["run", "--config", str(cfg_file), "--out", str(ro), "--quiet"]) == 0  # writable again: it finishes
    assert _matrix(ro) == _matrix(src)


# ----------------------------------------------------------------------------- (b) a full disk at every write point


def _disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


# write points faulted, one of each kind in a run's order (at most a few: each costs a run): the config, a
# stage's predictions, a stage's DONE marker, the matrix, a plot of the report (the others are more of these)
FAULTED = ("config.yaml", "stages/01-ImageNet/predictions/ImageNet.jsonl", "stages/02-Grounding/DONE",
           "matrix.json", "heatmap.png")


def test_a_full_disk_at_any_write_stops_clearly_and_a_rerun_finishes(finished, tmp_path, monkeypatch, capsys):
    """Failed before: a bare OSError traceback (no path: the write of a temp file had none)."""
    cfg_file, src, writes = finished
    assert set(FAULTED) <= set(writes), writes
    picks = [writes.index(name) for name in FAULTED]  # the first write of each
    for n in picks:
        out = tmp_path / f"full-{n}"
        count = [0]

        def faulty(orig, path, data):
            if not Path(path).is_relative_to(out):
                return orig(path, data)
            count[0] += 1
            if count[0] != n + 1:
                return orig(path, data)
            with monkeypatch.context() as m:  # the disk fills while this file is written
                m.setattr(os, "fsync", _disk_full)
                return orig(path, data)

        capsys.readouterr()
        with _every_write(monkeypatch, faulty):
            code = main(["run", "--config", str(cfg_file), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, (writes[n], err)
        line = _one_line(err)
        assert f"disk full writing {out / writes[n]}" in line, (writes[n], line)
        assert not list(out.rglob("*.tmp")), writes[n]  # no temp file left behind
        assert main(["run", "--config", str(cfg_file), "--out", str(out), "--quiet"]) == 0, writes[n]
        assert _matrix(out) == _matrix(src), writes[n]
        assert (out / "report.md").is_file()


def test_a_full_disk_on_the_step_log_is_named(finished, tmp_path, monkeypatch, capsys):
    """The step log is appended, not written atomically. Failed before: a bare OSError traceback."""
    cfg_file, src, _ = finished
    out = tmp_path / "steplog"
    import coin.tracking as tracking

    real_write = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("train_log.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(tracking.os, "write", write)
    capsys.readouterr()
    assert main(["run", "--config", str(cfg_file), "--out", str(out), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "disk full writing" in line and "train_log.jsonl" in line
    monkeypatch.undo()
    assert main(["run", "--config", str(cfg_file), "--out", str(out), "--quiet"]) == 0
    assert _matrix(out) == _matrix(src)


# ----------------------------------------------------------------------------- (c) sweeps


@pytest.fixture
def sweep_configs(tmp_path, micro_factory):
    paths = []
    for name in ("a", "b"):  # the same run twice under two names: one cached model, cheap
        cfg = micro_factory()
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        paths.append(str(path))
    return paths


def test_a_sweep_interrupted_in_its_second_run_resumes(finished, sweep_configs, tmp_path, monkeypatch, capsys):
    """Guard (right before): Ctrl-C in the 2nd member's 2nd stage; the same command skips the first and
    continues the second."""
    import coin.engine.run as run_mod

    _, src, _ = finished
    out = tmp_path / "sw"
    real, calls = run_mod.evaluate_stage, [0]

    def evaluate_stage(*a, **k):
        calls[0] += 1
        if calls[0] == 5:  # a run evaluates 3 times (zero-shot, 2 stages): the 2nd run, after training stage 1
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(run_mod, "evaluate_stage", evaluate_stage)
    argv = ["sweep", *sweep_configs, "--out", str(out), "--quiet"]
    assert main(argv) == 130
    assert "Resume with the same command" in capsys.readouterr().err
    assert (out / "a-s0" / "matrix.json").is_file() and not (out / "b-s0" / "matrix.json").exists()
    assert (out / "b-s0" / "stages" / "01-ImageNet" / "adapter").is_dir()
    monkeypatch.setattr(run_mod, "evaluate_stage", real)
    assert main(argv) == 0
    assert "finished earlier, skipped" in capsys.readouterr().out
    for name in ("a-s0", "b-s0"):
        assert _matrix(out / name) == _matrix(src)
    assert "a-s0, b-s0" in (out / "report" / "report.md").read_text()


def test_a_second_sweep_on_a_folder_in_use_is_refused(finished, sweep_configs, tmp_path, capsys):
    """Guard (right before): while one sweep runs a member, another on the same folder stops at it, one line."""
    from coin.engine.run_folder import FolderLock

    _, src, _ = finished
    out = tmp_path / "sw"
    _copy(src, out / "a-s0")  # the first sweep finished its first run ...
    (out / "b-s0").mkdir(parents=True)
    lock = FolderLock()
    lock.acquire(out / "b-s0")  # ... and works on the second
    try:
        capsys.readouterr()
        assert main(["sweep", *sweep_configs, "--out", str(out), "--quiet"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert str(out / "b-s0") in line and "in use by another coin process" in line
    finally:
        lock.release()
    assert main(["sweep", *sweep_configs, "--out", str(out), "--quiet"]) == 0  # once it is free: finished
    assert _matrix(out / "b-s0") == _matrix(src)
