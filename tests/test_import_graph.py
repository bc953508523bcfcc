"""coin's modules import each other in layers: no cycle, read from the source.

Every ``import`` counts, at module level and inside functions (a lazy import only hides a
cycle until the day someone moves it); imports under ``if TYPE_CHECKING:`` do not run and do
not count. Importing ``coin.a.b`` runs ``coin.a``'s ``__init__`` first, but that parent step is
not an edge here: a package that registers its own submodules is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "coin"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return skip


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the coin modules it imports."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    pkg = tmp_path / "coin"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from coin.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")  # lazy and relative: still a cycle
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from coin.a import x\n")
    graph = import_graph(pkg)
    assert graph["coin.sub.b"] == {"coin.a"} and graph["coin.c"] == set()
    assert cycles(graph) == [["coin.a", "coin.sub.b"]]


def test_coin_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["coin.engine.run"]  # the graph was read
    assert cycles(graph) == []


def test_config_is_a_leaf():
    """The run config's dataclasses import nothing of coin but the options builder and the errors."""
    assert import_graph()["coin.config"] <= {"coin.options", "coin.errors"}
    assert import_graph()["coin.options"] <= {"coin.errors"}
    assert import_graph()["coin.errors"] == set()


# ----------------------------------------------------------------------------- layers
# coin's folders (and top-level modules) from the bottom up: a module imports only from its own
# layer or the ones below, at module level and inside functions alike. The built-in entries of a
# registry may live above it (a benchmark's tasks and scorers in coin/benchmarks/<name>/): the
# registry imports them by name on its first lookup (``Registry(builtins=...)``), listed in LAZY.
LAYERS: list[tuple[str, ...]] = [
    ("coin", "coin.errors", "coin.io", "coin.machine", "coin.lock", "coin.stats", "coin.metrics", "coin.options",
     "coin.registry", "coin.requirements", "coin.schedule"),  # foundations: no knowledge of tasks, models or runs
    ("coin.config", "coin.shipped"),  # the run config's dataclasses; the configs shipped in the package
    ("coin.tracking",),  # step logs and experiment trackers
    ("coin.scoring",),  # scorers, normalisers, answer parsing, one protocol; the judge's parts
    ("coin.tasks",),  # what a task is, its registry, instruction families, orders, protocol sets, knowledge
    ("coin.data",),  # records, samples, images, answer sources
    ("coin.benchmarks",),  # one folder per benchmark (its tasks, scorers, layout, builders); loading, checking
    ("coin.models",),  # backbones and their wrappers
    ("coin.adapters",),  # LoRA, MoELoRA
    ("coin.methods",),  # continual-learning methods
    ("coin.config_load",),  # a run config checked against every registry
    ("coin.engine",),  # training, evaluation, runs, sweeps, judging a run
    ("coin.report",),  # reports of finished run folders
    ("coin.findings", "coin.catalog"),
    ("coin.api", "coin.cli"),  # the commands: engine and report joined
]
# the registries' built-in providers, imported on first lookup (coin.registry): the only upward imports
LAZY = {
    "coin.adapters.base": {"coin.adapters.lora", "coin.adapters.moelora"},
    "coin.models.backbone": {"coin.models.chat.backbone", "coin.models.llava.backbone", "coin.models.minigpt_v2.backbone",
                             "coin.models.qwen_vl_chat.backbone", "coin.models.tiny.backbone"},
    "coin.tasks.spec": {"coin.benchmarks"},
    "coin.scoring.scorers": {"coin.benchmarks"},
    "coin.scoring.normalize": {"coin.benchmarks"},
    "coin.benchmarks.spec": {"coin.benchmarks"},
    "coin.benchmarks.coin.builders.builder": {"coin.benchmarks.coin.builders"},
    "coin.methods.base": {"coin.methods"},
}


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest unit ``module`` belongs to."""
    best = None
    for k, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > best[1]):
                best = (k, len(unit))
    assert best is not None, f"{module} is in no layer of LAYERS: add its folder"
    return best[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def test_the_layer_check_finds_an_upward_import(tmp_path):
    pkg = tmp_path / "coin"
    for folder in ("tasks", "engine"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks" / "spec.py").write_text("def f():\n    from coin.engine import run\n")  # hidden in a function
    (pkg / "engine" / "run.py").write_text("from coin.tasks import spec\n")
    assert upward_imports(import_graph(pkg)) == ["coin.tasks.spec -> coin.engine.run"]


def test_every_import_goes_down_the_layers():
    graph = import_graph()
    assert len(graph) > 100
    assert upward_imports(graph) == []


def _registry_builtins() -> dict[str, set[str]]:
    """Every ``Registry(..., builtins=(...))`` in coin, by the module that declares it."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Registry":
                for kw in node.keywords:
                    if kw.arg == "builtins":
                        found.setdefault(_module_name(path, ROOT), set()).update(ast.literal_eval(kw.value))
    return found


def test_the_only_upward_imports_are_the_registries_named_builtins():
    """A registry's builtins are imported by name at run time, so the graph above does not see them:
    they are listed here, and each must exist."""
    import importlib.util

    found = _registry_builtins()
    assert found == LAZY
    for modules in found.values():
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module
