"""Secrets out of error text: what a judge endpoint echoes back never reaches a file, a log or the terminal.

A misconfigured or hostile OpenAI-compatible server may answer a 401 with the request's
``Authorization`` header in its body; the client puts that body into its exception, and coin
stores a failed request's error in ``samples.jsonl``. ``redact`` is applied where an error
becomes a string that coin keeps or shows (``coin.scoring.judge.backends._short`` for the
backends' errors, ``coin.engine.judging`` for what any backend returns or raises): it replaces
the key itself (the value of the variable ``judge.api_key_env`` names: ``secrets_of``) and
anything shaped like a credential (``Bearer <token>``, an ``Authorization:`` header's value,
``api_key=...``) with ``[REDACTED]``. Redaction comes before any truncation, so a cut never
leaves half a key behind.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

__all__ = ["REDACTED", "redact", "secrets_of"]

REDACTED = "[REDACTED]"

_QUOTE = r"""["']?"""
_PATTERNS = (
    # an Authorization (or Proxy-Authorization) header's whole value, as a header line, JSON or a repr
    re.compile(r"(?i)\b((?:proxy-)?authorization" + _QUOTE + r"\s*[:=]\s*" + _QUOTE + r")[^\"'\r\n,;}]+"),
    # a bearer token anywhere
    re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}\[\]]+"),
    # api_key=..., "api-key": "...", x-api-key: ..., access_token=... (query strings, JSON, headers)
    re.compile(r"(?i)\b((?:x-)?api[-_]?key|access[-_]?token" + r")(" + _QUOTE + r"\s*[:=]\s*" + _QUOTE + r")"
               r"[^\s\"'&,;}]+"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every one of ``secrets`` and every credential-shaped value replaced by ``[REDACTED]``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(lambda m: m.group(1) + REDACTED, text)
    text = _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)
    return _PATTERNS[2].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def secrets_of(cfg) -> tuple[str, ...]:
    """The secret values a judge config points at: the API key in the variable its ``api_key_env`` names."""
    opts = getattr(cfg, "options", None)
    name = opts.get("api_key_env") if isinstance(opts, dict) else getattr(opts, "api_key_env", None)
    value = os.environ.get(name, "") if isinstance(name, str) and name else ""
    return (value,) if value else ()
