"""Which CPU computed a run's bits: model name, family/model/stepping and torch's kernel level.

A CPU run is bit-for-bit repeatable on the same CPU kind, thread count and library versions
(README, "What reproducible means"). Two hosts sold under one name ("AMD EPYC") can differ in
generation, hence in the float kernels torch picks, and train a different tiny base from the same
code. ``env.json`` and the base's ``COMPLETE`` record this, so two runs that disagree show whether
they ran on the same kind of CPU.
"""

from __future__ import annotations

import platform
from pathlib import Path


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty off Linux)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_identity() -> dict[str, str | None]:
    """``{"name", "family", "model", "stepping", "capability"}``; a field that cannot be read is None."""
    info = _cpuinfo()
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        capability = None
    return {"name": info.get("model name") or platform.processor() or None, "family": info.get("cpu family"),
            "model": info.get("model"), "stepping": info.get("stepping"), "capability": capability}
