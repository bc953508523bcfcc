"""Rules about coin's structure that no single module's tests would notice breaking."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "transformers", "peft")
# Reading data, scoring a prediction, computing a metric and describing a task need no deep
# learning library: each of these (and every module under the packages) must import without one.
LIGHT_PACKAGES = ("coin.data", "coin.tasks")
LIGHT_MODULES = ("coin.data.coin_json", "coin.data.records", "coin.data.sample", "coin.benchmarks.layout",
                 "coin.benchmarks.check", "coin.benchmarks.load", "coin.metrics", "coin.scoring.scorers",
                 "coin.tasks.protocol_sets", "coin.scoring.normalize", "coin.tasks")

_PROBE = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    heavy, packages, modules = {heavy!r}, {packages!r}, {modules!r}
    names = list(modules)
    for p in packages:
        pkg = importlib.import_module(p)
        names += sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, p + "."))
    first = {{}}  # heavy library -> the first module whose import loaded it
    for name in dict.fromkeys(names):
        importlib.import_module(name)
        for h in heavy:
            if h in sys.modules and h not in first:
                first[h] = name
    print(json.dumps({{"checked": len(names), "first": first}}))
""")


def _probe(modules: tuple[str, ...], packages: tuple[str, ...] = ()) -> dict:
    """Import ``modules`` and every module of ``packages`` in a fresh interpreter, in order; report
    which of them first loaded each heavy library."""
    code = _PROBE.format(heavy=HEAVY, packages=packages, modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_data_metrics_scorers_and_tasks_do_not_import_torch():
    result = _probe(LIGHT_MODULES, LIGHT_PACKAGES)
    assert result["checked"] > len(LIGHT_MODULES)  # the packages' modules were walked
    assert result["first"] == {}, f"heavy libraries imported by light modules: {result['first']}"


def test_the_probe_notices_a_heavy_import():
    """The check above can fail: a module that does import torch is named."""
    assert _probe(("coin.data.sample", "torch"))["first"].get("torch") == "torch"
