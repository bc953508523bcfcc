"""Builders: each source dataset's own annotation files -> CoIN JSON (Original family).

``BUILDERS`` maps a source name to its ``Builder``; ``build_source`` runs one and writes
``<out>/Instructions_Original/<Task>/{train,test}.json``. Ten sources feed eight tasks:
RefCOCO, RefCOCO+ and RefCOCOg all write into Grounding, each replacing only its records.
Adding a source is one module with ``SOURCE``/``TASK``/``INPUTS``/``IMAGE_PREFIX``/``build``
that ends with ``BUILDERS.register(Builder(name=SOURCE, task=TASK, ...))``
(``coin.benchmarks.coin.builders.builder``); a plugin's own
file does the same. This package only imports the built-in modules so they register.
"""

from __future__ import annotations

from coin.benchmarks.coin.builders import gqa, imagenet, ocrvqa, refcoco, scienceqa, textvqa, vizwiz, vqav2  # noqa: F401
from coin.benchmarks.coin.builders.builder import BUILDERS, Builder, Built, build_source, options_of, register_builder

__all__ = ["BUILDERS", "Builder", "Built", "build_source", "options_of", "register_builder"]
