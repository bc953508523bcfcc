"""The judge's configuration: a small dataclass, loaded from YAML or CLI flags, validated once.

Every problem is reported at once with the key's name (``judge.timeout must be > 0, got
-1``) through ``coin.config.ConfigError``, before any request is sent or any weights load.
The API key itself never appears here: the config names the environment variable that
holds it, so configs, logs and the run folder can be shared without leaking it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass
from typing import Any, Mapping


from coin.config import ConfigError, read_yaml_mapping

__all__ = ["JudgeConfig", "judge_config"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class JudgeConfig:
    """Which judge grades the answers, and how it is called.

    ``backend``: ``openai`` (any OpenAI-compatible endpoint: vLLM, SGLang, Ollama, OpenAI)
    or ``hf`` (a local Hugging Face causal LM). ``model``: the served model name, or the
    local folder / hub id for ``hf``. ``api_key_env``: the *name* of the environment
    variable holding the key (None: no key, as local servers need). ``name``: the folder
    under ``<run>/judge/`` (default: derived from the model). ``cache``: the sqlite cache
    file (default ``<run>/judge/cache.sqlite``; point several runs at one file to share
    answers such as identical zero-shot predictions).
    """

    backend: str = "openai"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8  # openai: requests in flight
    timeout: float = 60.0  # openai: seconds per request
    retries: int = 3  # openai: extra attempts after a failed request
    backoff: float = 1.0  # openai: first retry waits this long, doubling each time
    max_tokens: int = 16
    prompt_version: str = "coin-v1"
    batch_size: int = 8  # hf: prompts per generate call
    device: str = "auto"  # hf: "auto" (cuda when available), "cpu", "cuda", "cuda:1"...
    dtype: str = "auto"  # hf: "auto" (bfloat16 on cuda, float32 on cpu) or a torch dtype name
    # the judge weights' version: hf loads this hub revision (branch, tag or commit); for a local
    # folder or a served model it is a label of your choosing. Part of the cache key either way,
    # so new weights under an old name never reuse the old weights' replies.
    revision: str | None = None
    name: str | None = None
    cache: str | None = None

    @property
    def judge_id(self) -> str:
        """Who answers, for people (reports, logs): the backend and the model."""
        return f"{self.backend}:{self.model}"

    @property
    def cache_id(self) -> str:
        """Who answers, for the cache key: everything besides the prompt that changes a reply.

        The backend says what that is (``identity``): e.g. the endpoint for ``openai``, the
        revision and the dtype actually loaded for ``hf``. A backend without ``identity``
        keys on every field that could matter. JSON, so no two configs share a string.
        """
        import json

        from coin.eval.judge.backends import BACKENDS

        identity = getattr(BACKENDS.get(self.backend), "identity", None)
        fields = identity(self) if identity is not None else {
            "model": self.model, "base_url": self.base_url, "revision": self.revision, "dtype": self.dtype,
            "device": self.device}
        return json.dumps({"backend": self.backend, **fields}, sort_keys=True, separators=(",", ":"))

    @property
    def folder_name(self) -> str:
        """``name``, else the model with path separators made safe, plus a non-default prompt version."""
        if self.name:
            return self.name
        from coin.eval.judge.prompt import PROMPT_VERSION

        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model.rstrip("/")).strip("_.") or "judge"
        return base if self.prompt_version == PROMPT_VERSION else f"{base}@{self.prompt_version}"

    def public_dict(self) -> dict:
        """The config as written into the run folder (it holds no secret: only the variable's name)."""
        return dataclasses.asdict(self)


def _type_ok(value: Any, tp: Any) -> bool:
    args = typing.get_args(tp) or (tp,)
    for t in args:
        if t is type(None) and value is None:
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t in (int, str) and isinstance(value, t) and not isinstance(value, bool):
            return True
    return False


def _validate(cfg: JudgeConfig, problems: list[str]) -> None:
    from coin.eval.judge.backends import BACKENDS
    from coin.eval.judge.prompt import PROMPTS

    if cfg.backend not in BACKENDS:
        problems.append(f"judge.backend: {BACKENDS.unknown_message(cfg.backend)}")
    if not cfg.model.strip():
        problems.append("judge.model is required (the served model name, or a local folder for the hf backend)")
    for key in ("concurrency", "timeout", "max_tokens", "batch_size"):
        if getattr(cfg, key) <= 0:
            problems.append(f"judge.{key} must be > 0, got {getattr(cfg, key)}")
    for key in ("retries", "backoff"):
        if getattr(cfg, key) < 0:
            problems.append(f"judge.{key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.prompt_version not in PROMPTS:
        problems.append(f"judge.prompt_version: {PROMPTS.unknown_message(cfg.prompt_version)}")
    if cfg.dtype not in _DTYPES:
        problems.append(f"judge.dtype must be one of {', '.join(_DTYPES)}, got {cfg.dtype!r}")
    if cfg.api_key_env is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.api_key_env):
            # never echo the value: it may be the key itself, pasted into the wrong field
            problems.append("judge.api_key_env must be the NAME of an environment variable (letters, digits, _); "
                            "put the key itself in that variable, never in the config")
        elif cfg.backend == "openai" and not os.environ.get(cfg.api_key_env):
            problems.append(f"judge.api_key_env: environment variable {cfg.api_key_env} is not set")
    if cfg.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", cfg.name):
        problems.append(f"judge.name must be a plain folder name (a letter or digit, then letters, digits, "
                        f"_ . @ -), got {cfg.name!r}")


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
    hints = typing.get_type_hints(JudgeConfig)
    names = [f.name for f in dataclasses.fields(JudgeConfig)]
    kwargs = {}
    for key, value in merged.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean 'judge.{close[0]}'?)" if close else ""
            problems.append(f"unknown key 'judge.{key}'{hint}")
        elif not _type_ok(value, hints[key]):
            problems.append(f"judge.{key} must be {_type_name(hints[key])}, got {value!r}")
        else:
            kwargs[key] = float(value) if hints[key] is float else value
    cfg = JudgeConfig(**kwargs)
    checks: list[str] = []
    _validate(cfg, checks)  # every problem at once, except a second one about a key already mistyped
    mistyped = {k for k in names if k not in kwargs and k in merged}
    problems += [c for c in checks if not any(c.startswith(f"judge.{k} ") or c.startswith(f"judge.{k}:")
                                              for k in mistyped)]
    if problems:
        raise ConfigError(problems, source)
    return cfg


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp) or (tp,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in args)
