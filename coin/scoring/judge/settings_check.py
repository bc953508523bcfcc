"""A judge config read and checked against the registered backends and prompts, every problem at once.

``judge_config`` merges a YAML file, a mapping and CLI flags, builds ``JudgeConfig`` with
``coin.options`` (types and the common keys' values), then checks what needs a registry: the
backend's name, the prompt version, and the keys the backend takes of its own, parsed into its
``Options`` (``cfg.options``). Each problem names its key (``judge.timeout must be > 0, got
-1``), before any request is sent or any weights load.

A key that another backend takes (``timeout`` with ``backend: hf``) is reported with the
backend it belongs to, as the run config does for a backbone's or an adapter's keys.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from coin.config import ConfigError, read_yaml_mapping
from coin.scoring.judge.backends import BACKENDS
from coin.scoring.judge.settings import JudgeConfig
from coin.scoring.judge.prompt import PROMPT_VERSION, PROMPTS
from coin.scoring.judge.protocols import JUDGE_PROTOCOLS
from coin.options import build, closest, flat_dict, suggest

__all__ = ["judge_config", "judge_problems"]

PREFIX = "judge."


def _fields(cls: type | None) -> list[str]:
    return list(getattr(cls, "__dataclass_fields__", {}))


def _common() -> list[str]:
    return [k for k in _fields(JudgeConfig) if k != "options"]


def _backend_options(cfg: JudgeConfig, problems: list[str]) -> None:
    """Parse ``cfg.options`` (the keys that are not common ones) with the backend's ``Options``.

    With an unknown backend, the keys are checked as for the backend most likely meant
    (``opneai``: ``openai``), so a typo or a wrong type is reported in the same pass.
    """
    known = cfg.backend in BACKENDS
    target = cfg.backend if known else closest(cfg.backend, BACKENDS.names())
    options_cls = BACKENDS.options_of(target) if target else None
    own = _fields(options_cls)
    raw = cfg.options if isinstance(cfg.options, dict) else flat_dict(cfg.options) or {}
    mine = {}
    for key, value in raw.items():
        owners = [n for n in BACKENDS.names() if key in _fields(BACKENDS.options_of(n))]
        if key in own:
            mine[key] = value
        elif owners:  # with an unknown backend, which one was meant is a guess: say nothing more
            if known:
                problems.append(f"unknown key '{PREFIX}{key}' for {PREFIX}backend {target!r}: it is an option of "
                                f"{', '.join(repr(o) for o in owners)}")
        else:
            every = sorted({k for n in BACKENDS.names() for k in _fields(BACKENDS.options_of(n))})
            takes = (f"; backend {target!r} takes {', '.join(own) or 'no keys of its own'} besides "
                     f"{', '.join(_common())}" if known else "")
            problems.append(f"unknown key '{PREFIX}{key}'{suggest(key, _common() + (own if known else every), PREFIX)}"
                            f"{takes}")
    cfg.options = build(options_cls, mine, PREFIX, problems) if options_cls is not None else None


def judge_problems(cfg: JudgeConfig) -> list[str]:
    """Every registry-dependent problem of a built ``cfg``; parses its backend's options into ``cfg.options``."""
    problems = []
    if cfg.backend not in BACKENDS:
        problems.append(f"{PREFIX}backend: {BACKENDS.unknown_message(cfg.backend)}")
    if cfg.prompt_version not in PROMPTS:
        problems.append(f"{PREFIX}prompt_version: {PROMPTS.unknown_message(cfg.prompt_version)}")
    if cfg.protocol not in JUDGE_PROTOCOLS:
        problems.append(f"{PREFIX}protocol: {JUDGE_PROTOCOLS.unknown_message(cfg.protocol)}")
    elif cfg.protocol == "paper":  # the original as run: its wording and its length, nothing else
        default_tokens = JudgeConfig.__dataclass_fields__["max_tokens"].default
        if cfg.prompt_version != PROMPT_VERSION:
            problems.append(f"{PREFIX}prompt_version: the paper protocol sends the original's wording "
                            f"({PROMPT_VERSION}), got {cfg.prompt_version!r}")
        if cfg.max_tokens != default_tokens:
            problems.append(f"{PREFIX}max_tokens: the paper protocol sends the original's 20 tokens; "
                            f"max_tokens sets the coin protocol's limit, got {cfg.max_tokens}")
    _backend_options(cfg, problems)
    return problems


def judge_config(data: Mapping | None = None, path: str | os.PathLike | None = None,
                 **overrides: Any) -> JudgeConfig:
    """Build and validate a ``JudgeConfig`` from a YAML file, a mapping and keyword overrides.

    Later sources win: the file, then ``data``, then ``overrides`` whose value is not
    None (so unset CLI flags keep the file's values). A file may hold the keys at the top
    level or under ``judge:``. Raises ``ConfigError`` listing every problem.
    """
    merged: dict = {}
    source = None
    if path is not None:
        source = str(path)
        loaded = read_yaml_mapping(path, "judge config file")
        if set(loaded) == {"judge"}:
            loaded = loaded["judge"]
        if not isinstance(loaded, dict):
            raise ConfigError(["the judge config must be a mapping"], source)
        merged.update(loaded)
    merged.update(data or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})

    problems: list[str] = []
    cfg = build(JudgeConfig, merged, PREFIX, problems)
    problems += judge_problems(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg
