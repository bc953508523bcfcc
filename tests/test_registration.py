"""One way to register, the name written once (issue #31): ``@REGISTRY.register`` on a class or a
function, ``REGISTRY.register(record)`` on a declared record, the name the entry's own.

The 0.x forms (``register("name", obj)``, ``register_task``, ``register_benchmark``,
``register_builder``) still work for plugins, with a ``DeprecationWarning``; nothing in coin or
its examples uses them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from coin.registry import Registry, entry_name

REPO = Path(__file__).resolve().parents[1]
OLD_CALLS = ("register_task", "register_benchmark", "register_builder")


def _sources() -> list[Path]:
    return sorted([*(REPO / "coin").rglob("*.py"), *(REPO / "examples").rglob("*.py")])


def _old_forms(path: Path) -> list[str]:
    """The 0.x registrations in one file: ``.register("name", ...)`` / ``.register(NAME, obj)`` or a
    ``register_task``/``register_benchmark``/``register_builder`` call."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        where = f"{path.relative_to(REPO)}:{node.lineno}"
        if called in OLD_CALLS:
            found.append(f"{where}: {called}(...)")
        elif called == "register" and isinstance(f, ast.Attribute) and node.args and (
                len(node.args) > 1 or isinstance(node.args[0], (ast.Constant, ast.JoinedStr))):
            found.append(f"{where}: {ast.unparse(node)[:80]}")
    return found


def test_nothing_in_coin_or_the_examples_registers_the_0x_way():
    """Each entry carries its name and registers itself in its own file; the name is written once."""
    found = [hit for path in _sources() if path != REPO / "coin" / "registry.py" for hit in _old_forms(path)]
    assert found == [], "give the entry its `name` and use @REGISTRY.register / REGISTRY.register(record):\n" + \
        "\n".join(found)


def _registries() -> dict[str, Registry]:
    """Every module-level ``Registry`` coin declares, by ``module.NAME``."""
    out = {}
    for path in sorted((REPO / "coin").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(target, ast.Name) and isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry":
                parts = path.relative_to(REPO).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                out[f"{module}.{target.id}"] = getattr(importlib.import_module(module), target.id)
    return out


def test_every_entry_is_registered_under_its_own_name():
    registries = _registries()
    assert {"coin.tasks.spec.TASKS", "coin.methods.base.METHODS", "coin.scoring.scorers.SCORERS",
            "coin.benchmarks.spec.BENCHMARKS", "coin.adapters.base.ADAPTERS"} <= set(registries)
    wrong = [f"{where}: {name!r} is {entry_name(reg.get(name))!r}" for where, reg in registries.items()
             for name in reg.names() if entry_name(reg.get(name)) != name]
    assert wrong == []


def test_the_0x_form_warns_and_still_works():
    reg: Registry = Registry("thing")

    def helper():
        return 1

    with pytest.warns(DeprecationWarning, match=r"register\('one', obj\) is deprecated"):
        assert reg.register("one", helper) is helper
    with pytest.warns(DeprecationWarning):
        @reg.register("two")
        def other():
            return 2
    assert reg.get("one") is helper and reg.get("two") is other and reg.names() == ["one", "two"]
    assert reg.register(helper) is helper and reg.get("helper") is helper  # the idiom: the function's own name


@pytest.fixture
def scratch():
    """Entries registered in a test are gone after it."""
    from coin.benchmarks import BENCHMARKS
    from coin.benchmarks.coin.builders import BUILDERS
    from coin.tasks import TASKS

    with TASKS.scratch(), BENCHMARKS.scratch(), BUILDERS.scratch():
        yield


def _sketch(**kw):
    from coin.tasks import TaskSpec

    fields = dict(name="Sketch", folder="Sketch", answer_form="phrase", scorer="exact",
                  instruction="Name the drawing in one word.", max_new_tokens=8)
    return TaskSpec(**{**fields, **kw})


def test_the_0x_helpers_warn_and_still_register(scratch):
    from coin.benchmarks import BENCHMARKS, BenchmarkSpec, register_benchmark
    from coin.benchmarks.coin.builders import BUILDERS, register_builder
    from coin.tasks import TASKS, register_task

    with pytest.warns(DeprecationWarning, match="use TASKS.register"):
        spec = register_task(_sketch())
    assert TASKS.get("Sketch") is spec

    class Sketchy(BenchmarkSpec):
        name = "sketchy"
        orders = {"paper": ("Sketch",)}

    with pytest.warns(DeprecationWarning, match="use BENCHMARKS.register"):
        bench = register_benchmark(Sketchy())
    assert BENCHMARKS.get("sketchy") is bench

    with pytest.warns(DeprecationWarning, match="use BUILDERS.register"):
        builder = register_builder("sketchsrc", "Sketch", lambda raw, prefix, seed: None, "labels.json", "sketches")
    assert BUILDERS.get("sketchsrc") is builder and builder.task == "Sketch"


def test_a_task_spec_is_keyword_only_and_a_bad_field_is_refused_at_registration_by_name(scratch):
    from coin.scoring.protocol import Protocol
    from coin.tasks import TASKS, TaskSpec

    with pytest.raises(TypeError):
        TaskSpec("Sketch", "Sketch", "phrase", "exact", "One word.", 8)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Protocol("paper", "exact", "lower", "one", "?")  # type: ignore[misc]
    with pytest.raises(ValueError) as e:
        TASKS.register(_sketch(answer_form="drawing"))
    assert "task 'Sketch':" in str(e.value)
    assert "answer_form must be one of letter, phrase, class, box, got 'drawing'" in str(e.value)
    with pytest.raises(ValueError, match=r"scorer: unknown scorer 'exakt'\. Did you mean 'exact'"):
        TASKS.register(_sketch(scorer="exakt"))
    assert "Sketch" not in TASKS
    assert TASKS.register(_sketch()) is TASKS.get("Sketch")


def test_a_benchmark_with_unregistered_tasks_is_refused_at_registration(scratch):
    from coin.benchmarks import BENCHMARKS, BenchmarkSpec

    class Ghost(BenchmarkSpec):
        name = "ghost"
        orders = {"paper": ("Nowhere",)}

    with pytest.raises(ValueError, match="benchmark 'ghost':\n  - tasks not registered: Nowhere"):
        BENCHMARKS.register(Ghost())
    assert "ghost" not in BENCHMARKS


def test_method_capabilities_are_declared_on_the_base_class_with_defaults():
    from coin.engine.fsdp import refusal
    from coin.methods import METHODS, Method

    assert (Method.name, Method.supports_fsdp, Method.fsdp_refusal, Method.final_row_only) == (
        "sequential", None, "", False)
    assert METHODS.get("sequential") is Method
    for name in METHODS.names():
        cls = METHODS.get(name)
        assert issubclass(cls, Method) and cls.name == name
        assert cls.supports_fsdp in (True, False, None) and isinstance(cls.fsdp_refusal, str), name
        assert isinstance(cls.final_row_only, bool), name
    assert [n for n in METHODS.names() if METHODS.get(n).final_row_only] == ["multitask"]
    assert refusal(METHODS.get("disco"), "disco") == ("method 'disco' does not support dist.strategy fsdp: its adapter "
                                                      "bank reads stored adapters outside the sharded forward "
                                                      "(not verified)")

    class Legacy(Method):  # a 0.x plugin's reason string still refuses with it
        supports_fsdp = "not yet"  # type: ignore[assignment]

        def loss(self, ctx, batch, outputs, loss):
            return loss

    assert refusal(Legacy, "legacy") == "method 'legacy' does not support dist.strategy fsdp: not yet"
