"""Workers die with their launcher, and ``coin status`` names the processes holding a run (issue 29.9).

``accelerate launch`` and torchrun start each worker in its own process group: killing the launcher
(even its whole group) used to leave the workers running, holding the run folder's lock and their
GPUs. Here a stand-in launcher starts a worker in its own session the same way, the worker goes
through coin's start-up (``dist.init``) and the launcher is SIGKILLed: the worker must be gone within
seconds. ``coin status`` then shows who holds a folder: pid, host, since when, alive or not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from coin.cli import main

LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time
    env = dict(os.environ, LOCAL_RANK="0", RANK="0", WORLD_SIZE="1")
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env, start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(600)
""")

WORKERS = {
    # coin's start-up as a launched worker runs it: the real entry point
    "dist.init": "from coin.engine import dist; dist.init()",
    # the portable half alone (no prctl): the thread that polls the parent's pid
    "polling": "from coin.engine import dist; assert dist.watch_parent(pdeathsig=False, poll=0.2)",
    # a worker that ignores SIGTERM (stuck, say, in a collective) still exits once the grace is over
    "grace": "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); from coin.engine import dist; "
             "assert dist.watch_parent(poll=0.2, grace=1.0)",
}


def _alive(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for a reaper that a container may not run)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(cond, seconds: float) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _start(code: str, ready: Path) -> tuple[subprocess.Popen, int]:
    """The stand-in launcher, running a worker that runs ``code`` then touches ``ready`` and sleeps."""
    worker = f"{code}\nimport pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(600)"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, worker], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    child = int(launcher.stdout.readline())
    return launcher, child


@pytest.mark.parametrize("worker", list(WORKERS))
def test_a_worker_exits_when_its_launcher_is_killed(worker, tmp_path):
    ready = tmp_path / "ready"
    launcher, child = _start(WORKERS[worker], ready)
    try:
        _wait_for(lambda: ready.exists() or not _alive(child), 120)
        assert ready.exists() and _alive(child), "the worker never got through its start-up"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        assert _wait_for(lambda: not _alive(child), 8), f"worker {child} outlived its launcher"
    finally:
        _kill(child)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_a_plain_coin_run_installs_no_watch():
    """Without a launcher (no LOCAL_RANK / WORLD_SIZE) nothing changes: ``nohup coin run`` outlives its shell."""
    code = ("import threading; from coin.engine import dist; dist.init(); "
            "print(dist.exit_with_launcher(), sorted(t.name for t in threading.enumerate()))")
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "RANK")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False ['MainThread']"


# --------------------------------------------------------------------------- coin status


HOLD = textwrap.dedent("""
    import pathlib, sys, time
    from coin.engine.run_folder import FolderLock
    lock = FolderLock()  # kept: a collected lock closes its file, which releases the folder
    lock.acquire(pathlib.Path(sys.argv[1]))
    pathlib.Path(sys.argv[2]).touch()
    time.sleep(600)
""")


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("tasks:\n  order: [ImageNet, Grounding]\n")
    return run


def test_status_names_the_process_holding_the_folder(tmp_path, capsys):
    run = _run_folder(tmp_path)
    ready = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(ready)])
    try:
        assert _wait_for(ready.exists, 120)
        assert main(["status", str(run)]) == 0
        text = capsys.readouterr().out
        assert f"running (pid {proc.pid})" in text
        assert f"held by pid {proc.pid} on {socket.gethostname()} since " in text and "(alive)" in text
        assert main(["status", str(run), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["holder"]["pid"] == proc.pid and st["holder"]["host"] == socket.gethostname()
        assert st["holder"]["alive"] is True and st["holder"]["started"]
        assert st["processes"] == [{"rank": 0, "pid": proc.pid, "host": socket.gethostname(), "alive": True}]
        assert st["launcher"] is None  # a plain process: no launcher recorded

        from coin.engine.run_folder import FolderLock, RunFolderError

        with pytest.raises(RunFolderError, match=f"in use by another coin process \\(pid {proc.pid} on "):
            FolderLock().acquire(run)  # the refusal names the holder too
    finally:
        proc.kill()
        proc.wait()
    assert main(["status", str(run)]) == 0
    text = capsys.readouterr().out
    assert "stopped" in text and "held by" not in text and "still alive" not in text


def test_status_shows_a_dead_launcher_and_its_orphans(tmp_path, capsys):
    """A worker that does not follow its launcher (an older coin, or one stuck before its watch): status says
    the launcher is gone and how to stop the process still holding the folder."""
    run = _run_folder(tmp_path)
    ready = tmp_path / "held"
    worker = f"import sys; sys.argv = ['-', {str(run)!r}, {str(ready)!r}]\n" + HOLD
    launcher, child = _start(worker, tmp_path / "unused")
    try:
        _wait_for(lambda: ready.exists() or not _alive(child), 120)
        assert ready.exists(), "the worker never took the lock"
        assert main(["status", str(run), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["launcher"] == {"pid": launcher.pid, "alive": True}
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        assert main(["status", str(run)]) == 0
        text = capsys.readouterr().out
        assert f"held by pid {child} " in text and f"launcher pid {launcher.pid}: gone" in text
        assert f"rank 0: pid {child} on {socket.gethostname()} (alive)" in text and "kill -TERM PID" in text
    finally:
        _kill(child)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_status_lists_processes_left_alive_by_the_last_launch(tmp_path, capsys):
    """The lock is free but a recorded worker lives on (its rank 0 died): it is named; a dead one and a pid
    reused by another process (another start time) are not. An empty lock file (older coin) shows nothing."""
    run = _run_folder(tmp_path)
    me, host = os.getpid(), socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:  # this process's start, in clock ticks since boot (field 22 of /proc/PID/stat), as the record holds it
        start = int(Path(f"/proc/{me}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    except OSError:
        start = None
    record = {"pid": dead.pid, "host": host, "started": "2025-01-01T00:00:00", "launcher": None,
              "processes": [{"rank": 0, "pid": dead.pid, "host": host, "start": None},
                            {"rank": 1, "pid": me, "host": host, "start": start},
                            {"rank": 2, "pid": me, "host": host, "start": None if start is None else start + 1},
                            {"rank": 3, "pid": 4242, "host": "elsewhere", "start": None}]}
    (run / ".lock").write_text(json.dumps(record))
    assert main(["status", str(run), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert not st["running"] and st["holder"] is None
    expected = [1] if start is not None else [1, 2]  # without /proc the start time cannot be checked
    assert [p["rank"] for p in st["processes"]] == expected
    assert main(["status", str(run)]) == 0
    assert f"still alive: rank 1 pid {me}" in capsys.readouterr().out

    (run / ".lock").write_text("")  # a lock file as coin wrote it before it recorded anything
    assert main(["status", str(run)]) == 0
    text = capsys.readouterr().out
    assert "stopped" in text and "still alive" not in text and "held by" not in text


def test_the_lock_record_is_emptied_on_release(tmp_path):
    from coin.engine.run_folder import FolderLock

    run = _run_folder(tmp_path)
    lock = FolderLock()
    lock.acquire(run)
    try:
        record = json.loads((run / ".lock").read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert [p["pid"] for p in record["processes"]] == [os.getpid()]
        assert threading.current_thread() is threading.main_thread()
    finally:
        lock.release()
    assert (run / ".lock").read_text() == ""
