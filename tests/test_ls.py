"""`coin ls [KIND]`: what is registered, each entry with its doc and its options, through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coin.catalog import KINDS, catalog
from coin.cli import main
from coin.methods import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"  # the method and task tables live on the docs site's pages

PLUGIN = '''
from dataclasses import dataclass

from coin.methods import METHODS, Method


@dataclass
class HalfwayOptions:
    """``method_options`` of halfway."""

    keep: float = 0.5  # share of each batch kept
    warm: bool = True  # start from the last stage's weights


@METHODS.register
class Halfway(Method):
    """A plugin method that trains on half of each batch."""

    name = "halfway"
    Options = HalfwayOptions
'''


@pytest.fixture
def scratch_methods(request):
    """METHODS as it is now, restored after the test (a plugin's registration does not leak)."""
    request.addfinalizer(lambda: [sys.modules.pop(m) for m in list(sys.modules) if m.startswith("coin_plugin_ls")])
    with METHODS.scratch():
        yield


def _section(out: str, kind: str) -> str:
    """The lines of ``kind``'s section in ``coin ls``'s text output."""
    start = re.search(rf"^{re.escape(kind)}: ", out, re.M).start()
    end = out.find("\n\n", start)
    return out[start:] if end < 0 else out[start:end]


def test_ls_alone_lists_every_kind(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    headings = [line.split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert headings == list(KINDS)
    assert "  replay  Rehearsal of stored samples" in _section(out, "methods")
    assert "paper: " in _section(out, "protocols") and "GQA → Grounding" in _section(out, "orders")


def test_ls_one_kind_shows_options_with_defaults_and_docs(capsys):
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if not line.startswith(" ")][0].startswith("methods: ")
    assert "adapters:" not in out and "tasks:" not in out
    for name in METHODS.names():
        assert re.search(rf"^  {re.escape(name)}\b", out, re.M), name
    assert "      samples: int = 100  # M: samples kept per finished task" in out  # replay's option
    assert "      online: bool = false" in out  # defaults as YAML writes them
    assert main(["ls", "adapter"]) == 0  # a singular kind is accepted
    assert "experts: int = " in _section(capsys.readouterr().out, "adapters")  # MoELoRA's own key


def test_ls_an_unknown_kind_lists_the_kinds(capsys):
    assert main(["ls", "metods"]) == 2
    err = capsys.readouterr().err
    assert "unknown kind 'metods' (did you mean 'methods'?)" in err
    assert all(k in err for k in KINDS)


def test_ls_json_is_machine_readable(capsys):
    assert main(["ls", "methods", "orders", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["methods", "orders"]
    methods = {e["name"]: e for e in data["methods"]["entries"]}
    assert sorted(methods) == METHODS.names()
    assert {"name": "samples", "type": "int", "default": 100, "doc": "M: samples kept per finished task"} in \
        methods["replay"]["options"]
    orders = {e["name"]: e["facts"]["tasks"] for e in data["orders"]["entries"]}
    assert orders["paper"].startswith("ScienceQA → TextVQA")


def test_every_kind_resolves_and_lists_entries():
    """A kind whose registry moved or was renamed fails here, not in front of a user."""
    cat = catalog()
    for kind, section in cat.items():
        assert section["entries"], f"{kind}: nothing registered"
        assert all(e["name"] for e in section["entries"])
    json.dumps(cat, default=str)


def test_a_plugin_method_shows_with_its_options(tmp_path, capsys, scratch_methods):
    plugin = tmp_path / "lsplugin.py"
    plugin.write_text(PLUGIN)
    assert main(["ls", "methods"]) == 0
    assert "halfway" not in capsys.readouterr().out
    assert main(["ls", "methods", "-p", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "  halfway  A plugin method that trains on half of each batch." in out
    assert "      keep: float = 0.5  # share of each batch kept" in out
    assert "      warm: bool = true  # start from the last stage's weights" in out


def test_a_plugin_that_cannot_be_imported_is_an_error(tmp_path, capsys, scratch_methods):
    bad = tmp_path / "lsplugin_bad.py"
    bad.write_text("raise RuntimeError('half-written plugin')\n")
    assert main(["ls", "methods", "--plugin", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "plugins[0]" in err and "half-written plugin" in err


def _readme_table(header: str) -> list[list[str]]:
    """The body rows of the docs' table whose header line starts with ``header``."""
    lines = [line for page in sorted(DOCS.glob("*.md")) for line in page.read_text(encoding="utf-8").splitlines()]
    start = next(k for k, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _yaml(v: object) -> str:
    return json.dumps(v) if v is None or isinstance(v, bool) else str(v)


def test_the_readme_tables_match_what_is_registered():
    """The README's method table names exactly the registered methods, each option it lists with the
    registered default; its task table names exactly the built-in tasks (a fresh `coin ls --json`)."""
    proc = subprocess.run([sys.executable, "-m", "coin.cli", "ls", "methods", "tasks", "--json"],
                          capture_output=True, text=True, check=True, cwd=README.parent)
    data = json.loads(proc.stdout)
    registered = {e["name"]: {o["name"]: _yaml(o["default"]) for o in e["options"]}
                  for e in data["methods"]["entries"]}
    rows = _readme_table("| method | what it does | options (defaults) |")
    listed = {row[0].strip("`"): row[2] for row in rows}
    assert sorted(listed) == sorted(registered)
    for method, cell in listed.items():
        options = dict(re.findall(r"`(\w+)` ([^,]+)", cell))
        for key, default in options.items():
            assert key in registered[method], f"README lists {method}.{key}, which {method} does not take"
            assert default.strip() == registered[method][key], f"README: {method}.{key} defaults to {default}"
    tasks = [row[0] for header in ("| task | CoIN-Synth analogue |", "| UCIT task |", "| MLLM-CL task |")
             for row in _readme_table(header)]
    assert sorted(tasks) == sorted(e["name"] for e in data["tasks"]["entries"])
