"""Method options: one dataclass per method, checked at the config boundary like the rest.

A method declares ``Options`` (a dataclass whose fields have defaults and comments) and may
give it a ``check()`` returning value problems (``"lambda_ must be >= 0, got -1"``). The run
config passes the user's ``method_options`` mapping through ``option_problems`` before any
weights load, so every unknown key, wrong type and bad value is reported at once, each with
its full key (``method_options.lambda_``) and a "did you mean" for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from typing import Any


@dataclass
class NoOptions:
    """The options of a method that has none."""


def _type_ok(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # other annotations are the method's own business


def option_problems(cls: type, options: dict | None, prefix: str = "method_options.") -> list[str]:
    """Every problem with ``options`` for the options dataclass ``cls``, keys named with ``prefix``."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        return [f"{prefix.rstrip('.')} must be a mapping, got {type(options).__name__}"]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    problems = []
    for key, value in options.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            choices = f"; {cls.__name__} takes: {', '.join(names)}" if names else "; this method takes no options"
            problems.append(f"unknown key '{prefix}{key}'{hint}{choices}")
        elif not _type_ok(value, hints[key]):
            problems.append(f"{prefix}{key} must be {getattr(hints[key], '__name__', hints[key])}, got {value!r}")
    if problems:
        return problems
    check = getattr(cls, "check", None)
    if check is not None:
        problems += [prefix + p for p in check(_build(cls, options))]
    return problems


def _build(cls: type, options: dict) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{k: float(v) if hints[k] is float else v for k, v in options.items()})


def parse_options(cls: type, options: dict | None, prefix: str = "method_options.") -> Any:
    """An instance of ``cls`` from ``options``; raises ``ValueError`` listing every problem."""
    problems = option_problems(cls, options, prefix)
    if problems:
        raise ValueError("invalid method options:\n  - " + "\n  - ".join(problems))
    return _build(cls, options or {})
