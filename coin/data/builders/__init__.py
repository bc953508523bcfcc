"""Builders: each source dataset's own annotation files -> CoIN JSON (Original family).

``BUILDERS`` maps a source name to its ``Builder``; ``build_source`` runs one and writes
``<out>/Instructions_Original/<Task>/{train,test}.json``. Ten sources feed eight tasks:
RefCOCO, RefCOCO+ and RefCOCOg all write into Grounding, each replacing only its records.
Adding a source is one module with ``SOURCE``/``TASK``/``INPUTS``/``IMAGE_PREFIX``/``build``
and one line below.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from coin.data.builders import gqa, imagenet, ocrvqa, refcoco, scienceqa, textvqa, vizwiz, vqav2
from coin.data.builders.common import Builder, Built, write_built
from coin.data.coin_json import DataError
from coin.registry import Registry

BUILDERS: Registry[Builder] = Registry("data source")

for _m in (vqav2, gqa, textvqa, vizwiz, scienceqa, ocrvqa, imagenet):
    BUILDERS.register(_m.SOURCE, Builder(_m.SOURCE, _m.TASK, _m.build, _m.INPUTS, _m.IMAGE_PREFIX))
for _name, _fn in refcoco.BUILDS.items():
    BUILDERS.register(_name, Builder(_name, refcoco.TASK, _fn, refcoco.INPUTS, refcoco.IMAGE_PREFIX))


def build_source(source: str, raw: str | Path, out: str | Path, seed: int = 0, image_prefix: str | None = None,
                 **options: Any) -> dict[str, int]:
    """Build ``source`` from its raw folder into the CoIN tree ``out``; returns the record counts."""
    builder = BUILDERS.get(source)
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"{source}: raw folder {raw} does not exist (it should hold {builder.inputs})")
    prefix = builder.image_prefix if image_prefix is None else image_prefix
    allowed = options_of(source)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"{source}: unknown option(s) {', '.join(unknown)}; options: {', '.join(allowed) or 'none'}")
    return write_built(out, builder, builder.build(raw, prefix, seed, **options))


def options_of(source: str) -> dict[str, Any]:
    """The extra options a source's builder takes, with their defaults."""
    params = inspect.signature(BUILDERS.get(source).build).parameters
    return {k: p.default for k, p in params.items() if k not in ("raw", "prefix", "seed", "source")}


__all__ = ["BUILDERS", "Builder", "Built", "build_source", "options_of"]
