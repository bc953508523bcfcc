"""Every error coin raises lives in coin/errors.py, with its exit code (read from the source)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import coin.errors as errors

ROOT = Path(__file__).resolve().parent.parent / "coin"

# exception classes that may stay where they are: never raised to a user, with the reason
INTERNAL = {
    ("coin.adapters.routing", "_Stop"): "control flow inside one forward: raised by a hook, caught by its caller",
}
_EXCEPTION_NAMES = {name for name, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exception_classes() -> dict[tuple[str, str], list[str]]:
    """(module, class) -> base names of every class in coin whose bases name an exception: a builtin
    exception, or a class found so (so ``class X(DataError)`` counts wherever ``DataError`` lives)."""
    classes: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes[(_module(path), node.name)] = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
    known = set(_EXCEPTION_NAMES)
    found: dict[tuple[str, str], list[str]] = {}
    while True:
        more = {k: b for k, b in classes.items() if k not in found and any(n in known for n in b)}
        if not more:
            return found
        found |= more
        known |= {name for _, name in more}


def test_the_scan_finds_exception_classes():
    found = _exception_classes()
    assert ("coin.errors", "DataError") in found and ("coin.errors", "ReferenceFileError") in found
    assert ("coin.adapters.routing", "_Stop") in found
    assert len(found) >= 20


def test_every_exception_class_is_defined_in_coin_errors():
    elsewhere = sorted(f"{m}.{n}" for m, n in _exception_classes() if m != "coin.errors" and (m, n) not in INTERNAL)
    assert elsewhere == [], f"define these in coin/errors.py (import them back where they were): {elsewhere}"
    for (module, name), reason in INTERNAL.items():  # the allow-list names classes that exist, each with a reason
        assert (module, name) in _exception_classes() and reason


def test_every_error_has_a_docstring_and_an_exit_code():
    defined = sorted(n for m, n in _exception_classes() if m == "coin.errors")
    assert sorted(c.__name__ for c in errors.ERRORS) == defined, "ERRORS lists every class of coin.errors"
    assert sorted(errors.__all__) == sorted(["ERRORS", *defined])
    for cls in errors.ERRORS:
        assert cls.__module__ == "coin.errors" and cls.__doc__ and cls.__doc__.strip(), cls
        assert "exit_code" in vars(cls), f"{cls.__name__} states its own exit_code"
        assert cls.exit_code in (None, 2, 3, 130), cls


def test_no_error_shadows_a_builtin():
    assert not {c.__name__ for c in errors.ERRORS} & set(dir(builtins))


def test_coin_errors_imports_nothing_of_coin():
    tree = ast.parse((ROOT / "errors.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("coin") and not node.level, ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("coin") for a in node.names), ast.unparse(node)


def test_the_old_import_locations_still_work():
    """Code written against an error's first home keeps working: the class is imported back there."""
    import importlib

    old = {
        "coin.options": "OptionsError", "coin.config": "ConfigError", "coin.registry": "UnknownNameError",
        "coin.io": ("FileFormatError", "WriteError"), "coin.data.coin_json": "DataError",
        "coin.data.records": "RecordError", "coin.data.images": "ImageTooLarge",
        "coin.data.answers": "AnswerSourceError", "coin.benchmarks.ucit.captions": "CaptionMetricsError",
        "coin.config_load": "UntrustedPlugins", "coin.engine.run_folder": "RunFolderError",
        "coin.engine.checkpoint": "CheckpointError", "coin.engine.dist": "UnsupportedLaunch",
        "coin.engine.judging": "JudgeError", "coin.engine.sweep": "SweepError",
        "coin.engine.train": ("NonFiniteLossError", "Interrupted"), "coin.adapters.bank": "BankError",
        "coin.adapters.routing": "RoutingError", "coin.models.vision_cache": "VisionCacheRefused",
        "coin.models.tokenizer_check": "TokenizerError", "coin.models.images": "ImageError",
        "coin.models.llava.parts": ("PartsError", "MissingPartError"),
    }
    for module, names in old.items():
        mod = importlib.import_module(module)
        for name in (names,) if isinstance(names, str) else names:
            assert getattr(mod, name) is getattr(errors, name), f"{module}.{name}"
            if hasattr(mod, "__all__"):
                assert name in mod.__all__, f"{module}.__all__ lacks {name}"


def test_base_classes_and_messages_are_kept():
    assert issubclass(errors.ConfigError, errors.OptionsError) and issubclass(errors.OptionsError, ValueError)
    assert issubclass(errors.UnknownNameError, KeyError) and str(errors.UnknownNameError("no 'x'")) == "no 'x'"
    assert issubclass(errors.MissingPartError, errors.PartsError) and issubclass(errors.MissingPartError,
                                                                                  FileNotFoundError)
    assert issubclass(errors.TokenizerError, errors.PartsError)
    assert issubclass(errors.ReferenceFileError, errors.DataError)
    assert str(errors.ConfigError(["a", "b"], "f.yaml")) == "invalid config in f.yaml:\n  - a\n  - b"
    assert str(errors.ConfigError(["a"], line="f.yaml: not valid UTF-8 at byte 3")) == "f.yaml: not valid UTF-8 at byte 3"
    import errno

    assert str(errors.WriteError(errno.ENOSPC, "No space left", "/x/f.json")).startswith("disk full writing /x/f.json")
    assert str(errors.WriteError(errno.EACCES, "Permission denied", "/x/f")) == "cannot write /x/f (Permission denied)"
