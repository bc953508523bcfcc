"""The CPU kind a run and its tiny base were computed on is recorded, and a mismatch is said.

Two hosts sold as "AMD EPYC" can train different tiny bases from the same code (the default
matrix moved on 2026-12-05 with the code path of the base unchanged): ``env.json`` and the
base's ``COMPLETE`` carry ``coin.machine.cpu_identity()``, and a run whose cached base came from
another CPU kind says so in its log.
"""

from __future__ import annotations

import json

import coin.models.tiny.pretrain as pretrain
from coin.config_load import from_dict
from coin.machine import _cpuinfo, cpu_identity


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7763 64-Core Processor
stepping\t: 1

processor\t: 1
model name\t: something else
"""


def test_cpuinfo_reads_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO)
    info = _cpuinfo(f)
    assert info["model name"] == "AMD EPYC 7763 64-Core Processor" and info["cpu family"] == "25"
    assert _cpuinfo(tmp_path / "absent") == {}


def test_a_cached_base_from_another_cpu_kind_is_named(micro_config, monkeypatch):
    cfg = from_dict(micro_config).model
    lines: list[str] = []
    _, path = pretrain.load_or_pretrain(cfg, log=lines.append, progress=False)  # pretrained here, or cached
    done = json.loads((path / "COMPLETE").read_text())
    assert done["cpu"] == cpu_identity() and done["threads"] >= 1
    lines.clear()
    pretrain.load_or_pretrain(cfg, log=lines.append, progress=False)
    assert not any("another CPU kind" in line for line in lines)  # same machine: nothing to say
    other = {**cpu_identity(), "family": "999", "name": "Elsewhere CPU"}
    monkeypatch.setattr(pretrain, "cpu_identity", lambda: other)
    lines.clear()
    pretrain.load_or_pretrain(cfg, log=lines.append, progress=False)
    note = [line for line in lines if "another CPU kind" in line]
    assert len(note) == 1 and "Elsewhere CPU family 999" in note[0]


def test_the_lock_names_each_package_that_differs_from_it(tmp_path):
    """``constraints.txt`` (coin.lock): a run records which installed packages differ from the README's versions."""
    import torch

    from coin.lock import lock_path, lock_status, read_lock

    lock = tmp_path / "constraints.txt"
    public = torch.__version__.split("+")[0]
    lock.write_text(f"# a comment\ntorch=={public}\nTransformers==0.0.1\nnot-installed-anywhere==1.0\n")
    assert read_lock(lock) == {"torch": public, "transformers": "0.0.1", "not-installed-anywhere": "1.0"}
    status = lock_status(lock)
    import transformers

    assert status["pinned"] == 3 and not status["matches"]
    assert status["differs"] == {"transformers": ["0.0.1", transformers.__version__.split("+")[0]]}
    lock.write_text(f"torch=={public}\n")
    assert lock_status(lock)["matches"]
    shipped = lock_path()  # the repository's own lock is read the same way
    assert shipped is not None and "torch" in read_lock(shipped) and "transformers" in read_lock(shipped)


def test_the_lock_records_the_copy_python_imports_when_a_package_is_installed_twice(tmp_path, monkeypatch):
    """A virtual environment over the system's site-packages holds two copies of a package; Python imports
    the first on ``sys.path``, and ``env.json``'s versions must name that one, not the last one seen."""
    import sys

    from coin.lock import installed

    for folder, version in (("venv", "1.0"), ("system", "2.0")):
        info = tmp_path / folder / f"twice_installed_pkg-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: twice-installed-pkg\nVersion: {version}\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "venv"), str(tmp_path / "system"), *sys.path])
    assert installed()["twice-installed-pkg"] == "1.0"
