"""The judge's configuration: which judge grades the answers, as one small dataclass.

``JudgeConfig`` holds the keys every backend reads; it is an open section, so the keys a
backend takes of its own (``timeout`` for ``openai``, ``dtype`` for ``hf``: the backend's
``Options``) are written beside them, flat, as users always wrote them. Reading a file and
checking every key against the selected backend is ``coin.scoring.judge.settings_check.judge_config``;
this module imports nothing that knows the backends, so the backends may import it.

The API key itself never appears here: the ``openai`` backend's options name the environment
variable that holds it, so configs, logs and the run folder can be shared without leaking it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from coin.scoring.judge.prompt import PROMPT_VERSION
from coin.options import flat_dict

__all__ = ["JudgeConfig"]


@dataclass
class JudgeConfig:
    """Which judge grades the answers, and how it is called.

    ``backend``: ``openai`` (any OpenAI-compatible endpoint: vLLM, SGLang, Ollama, OpenAI)
    or ``hf`` (a local Hugging Face causal LM); ``coin ls judge-backends`` lists each one's
    own keys. ``model``: the served model name, or the local folder / hub id for ``hf``.
    ``name``: the folder under ``<run>/judge/`` (default: derived from the model). ``cache``:
    the sqlite cache file (default ``<run>/judge/cache.sqlite``; point several runs at one
    file to share answers such as identical zero-shot predictions). ``protocol``: ``coin``
    (default, reproducible) or ``paper`` (the original as run), see ``coin.scoring.judge.protocols``.
    """

    __open__ = "options"  # the backend's own keys are collected into ``options``

    backend: str = "openai"  # who answers: a name in coin.scoring.judge.backends.BACKENDS
    model: str = ""  # the served model name, or a local folder / hub id for hf
    # how the judge is asked and read (coin.scoring.judge.protocols): coin (default: greedy, strict parsing,
    # reproducible) or paper (the original as run: sampled at temperature 0.7, loose parsing, rounded)
    protocol: str = "coin"
    max_tokens: int = 16  # reply length limit (the coin protocol's; paper sends the original's 20)
    prompt_version: str = PROMPT_VERSION  # the judge prompt's wording (coin.scoring.judge.prompt.PROMPTS)
    # the judge weights' version: hf loads this hub revision (branch, tag or commit); for a local
    # folder or a served model it is a label of your choosing. Part of the cache key either way,
    # so new weights under an old name never reuse the old weights' replies.
    revision: str | None = None
    name: str | None = None  # the folder under <run>/judge/ (default: from the model)
    cache: str | None = None  # the sqlite cache file (default <run>/judge/cache.sqlite)
    # the backend's own keys, written beside the ones above; after judge_config, its parsed Options
    options: Any = field(default_factory=dict)

    def check(self) -> list[str]:
        """Problems of the common keys' values (the backend's own keys are its Options' business)."""
        out = []
        if not self.model.strip():
            out.append("model is required (the served model name, or a local folder for the hf backend)")
        if self.max_tokens <= 0:
            out.append(f"max_tokens must be > 0, got {self.max_tokens}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", self.name):
            out.append(f"name must be a plain folder name (a letter or digit, then letters, digits, _ . @ -), "
                       f"got {self.name!r}")
        return out

    @property
    def judge_id(self) -> str:
        """Who answers, for people (reports, logs): the backend and the model."""
        return f"{self.backend}:{self.model}"

    @property
    def folder_name(self) -> str:
        """``name``, else the model with path separators made safe, plus a non-default prompt version
        and protocol (so the two protocols' matrices of one judge sit side by side)."""
        if self.name:
            return self.name
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.model.rstrip("/")).strip("_.") or "judge"
        suffixes = [s for s, default in ((self.prompt_version, PROMPT_VERSION), (self.protocol, "coin"))
                    if s != default]
        return "@".join([base, *suffixes])

    def public_dict(self) -> dict:
        """The config as written into the run folder, flat as users write it (no secret: only the variable's name)."""
        return flat_dict(self)
