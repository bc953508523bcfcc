"""The judge cache: every reply a judge gave, keyed by who was asked what.

The key is (judge, prompt version, SHA-256 of the prompt's messages, max_tokens), where
"judge" is ``backends.cache_id(cfg)``: the backend, the model and whatever else the backend
says changes a reply (the endpoint for ``openai``; the revision and the dtype actually loaded
for ``hf``), and the judge protocol when it is not the default (``paper`` samples; its
``max_tokens`` slot holds the 20 tokens it sends). So

- a killed ``coin judge`` resumes without asking again what was already answered;
- a second judge model, the same name served elsewhere or loaded in another dtype, or a
  new prompt wording, runs over the same predictions without ever reading the first
  one's replies;
- identical prompts (e.g. the zero-shot predictions shared by every run of a base
  model) are asked once when runs point at one cache file.

Storage is sqlite in WAL mode: each reply is committed as it arrives, a kill loses at
most the reply in flight, and several processes may share one file. Only replies are
stored (unparsable ones included, since at temperature 0 asking again gives the same
text; under the sampled ``paper`` protocol the stored reply is the one draw the run keeps);
failed requests are not, so the next run retries them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable

__all__ = ["JudgeCache", "CacheKey"]

CacheKey = tuple[str, str, str, int]  # (backends.cache_id(cfg), prompt version, prompt sha256, max_tokens)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    judge TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    prompt_sha TEXT NOT NULL,
    max_tokens INTEGER NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (judge, prompt_version, prompt_sha, max_tokens)
)
"""


class JudgeCache:
    """A persistent map from ``CacheKey`` to the judge's reply text.

    Use it from one thread (the one collecting replies); open one per process.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, keys: Iterable[CacheKey]) -> dict[CacheKey, str]:
        """The cached replies among ``keys`` (absent keys are left out)."""
        out: dict[CacheKey, str] = {}
        by_group: dict[tuple[str, str, int], list[str]] = {}
        for judge, version, sha, max_tokens in set(keys):
            by_group.setdefault((judge, version, max_tokens), []).append(sha)
        for (judge, version, max_tokens), shas in by_group.items():
            for start in range(0, len(shas), 500):  # stay under sqlite's bound-parameter limit
                chunk = shas[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT prompt_sha, reply FROM replies WHERE judge=? AND prompt_version=? AND max_tokens=? "
                    f"AND prompt_sha IN ({marks})", (judge, version, max_tokens, *chunk))
                for sha, reply in rows:
                    out[(judge, version, sha, max_tokens)] = reply
        return out

    def put(self, key: CacheKey, reply: str) -> None:
        """Store one reply and commit at once, so a kill right after keeps it."""
        self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)", (*key, reply, time.time()))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
