"""RefCOCO, RefCOCO+ and RefCOCOg -> CoIN Grounding: one referring expression per image.

Raw folder per source (the ``refer`` release, e.g. ``data/refcoco+/``): ``refs(unc).p``
(RefCOCOg: ``refs(umd).p``, else ``refs(google).p``; a ``refs.json`` with the same content
is accepted) and ``instances.json``. A ref is ``{"ref_id", "ann_id", "image_id", "split",
"sentences": [{"sent", "raw", ...}]}``; ``instances.json`` holds the COCO ``images``
(``id``, ``file_name``, ``width``, ``height``) and ``annotations`` (``id``, ``bbox`` as
``[x, y, w, h]`` in pixels).

For every image of a split one ref and one of its sentences are drawn (seeded by source
and image id), as CoIN has one expression per image. The box is normalised to the image
padded to a square (the shorter side centred, as LLaVA's ``expand2square`` pads), then
written with 2 decimals: ``"[x1, y1, x2, y2]"``. Test records carry ``answer_bbox`` and
``size`` ``[width, height]``. The refs pickles are read with an unpickler that admits
only plain data, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import random
from collections import defaultdict
from functools import partial
from pathlib import Path

from coin.benchmarks.coin.builders.builder import (BUILDERS, Builder, Built, find_file, image_path, need, read_source_json,
                                       test_record, train_record)
from coin.data.coin_json import DataError
from coin.tasks import get_task

TASK = "Grounding"
INPUTS = "refs(unc).p / refs(umd).p (or refs.json) and instances.json"
IMAGE_PREFIX = "COCO2014/train2014"
REFS = {"refcoco": ("refs(unc).p",), "refcoco+": ("refs(unc).p",), "refcocog": ("refs(umd).p", "refs(google).p")}
TEST_SPLITS = {"refcoco": "val,testA,testB", "refcoco+": "val,testA,testB", "refcocog": "val,test"}


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: the refs files hold only dicts, lists, strings and numbers."""

    def find_class(self, module: str, name: str):  # noqa: D102
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: refs files hold plain data only")


def read_refs(raw: Path, source: str) -> list[dict]:
    """The refs list from the pickle (plain data only) or from ``refs.json``."""
    path = find_file(raw, [*REFS[source], "refs.json"], source)
    if path.suffix == ".json":
        refs = read_source_json(path, source)
    else:
        try:
            refs = _PlainUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise DataError(f"{path}: cannot read refs ({e})") from None
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def square_box(bbox: list[float], width: float, height: float) -> list[float]:
    """A COCO ``[x, y, w, h]`` pixel box as ``[x1, y1, x2, y2]`` in [0, 1] of the padded square."""
    x, y, w, h = map(float, bbox)
    side = max(width, height)
    dx, dy = (side - width) / 2, (side - height) / 2
    return [min(max(v / side, 0.0), 1.0) for v in (x + dx, y + dy, x + w + dx, y + h + dy)]


def box_text(box: list[float]) -> str:
    """``"[0.12, 0.34, 0.56, 0.78]"``: CoIN's answer format (2 decimals)."""
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def _instances(raw: Path, source: str) -> tuple[dict, dict, Path]:
    path = find_file(raw, ["instances.json"], source)
    data = read_source_json(path, source)
    need(data, ("images", "annotations"), str(path))
    images = {im["id"]: im for im in data["images"]}
    anns = {a["id"]: a for a in data["annotations"]}
    return images, anns, path


def _pick(refs: list[dict], splits: set[str], seed: int, source: str) -> list[tuple[dict, str]]:
    """One (ref, sentence) per image of ``splits``, images in order of first appearance."""
    by_image: dict = defaultdict(list)
    for k, ref in enumerate(refs):
        need(ref, ("ref_id", "ann_id", "image_id", "split", "sentences"), f"{source} ref {k}")
        if ref["split"] in splits and ref["sentences"]:
            by_image[ref["image_id"]].append(ref)
    out = []
    for image_id, image_refs in by_image.items():
        rng = random.Random(f"{seed}/{source}/{image_id}")
        ref = rng.choice(image_refs)
        sent = rng.choice(ref["sentences"])
        text = str(sent.get("sent") or sent.get("raw") or "").strip() if isinstance(sent, dict) else str(sent).strip()
        if text:
            out.append((ref, text))
    return out


def build(raw: Path, prefix: str = IMAGE_PREFIX, seed: int = 0, *, source: str, train_splits: str = "train",
          test_splits: str | None = None) -> Built:
    """CoIN Grounding records of one RefCOCO-family source."""
    refs = read_refs(raw, source)
    images, anns, ipath = _instances(raw, source)
    template = get_task(TASK).instruction
    built = Built()
    for split_names, into in ((train_splits, built.train), (test_splits or TEST_SPLITS[source], built.test)):
        for ref, sentence in _pick(refs, {s.strip() for s in split_names.split(",")}, seed, source):
            where = f"{source} ref {ref['ref_id']}"
            if ref["image_id"] not in images or ref["ann_id"] not in anns:
                raise DataError(f"{where}: image {ref['image_id']} or annotation {ref['ann_id']} not in {ipath}")
            im = images[ref["image_id"]]
            box = box_text(square_box(anns[ref["ann_id"]]["bbox"], im["width"], im["height"]))
            rid = f"{source}_{ref['ref_id']}"
            image, text = image_path(prefix, im["file_name"]), template.format(sentence)
            if into is built.train:
                into.append(train_record(rid, image, text, box, source))
            else:
                into.append(test_record(rid, image, text, box, source, answer_bbox=box, size=[im["width"], im["height"]]))
    return built


BUILDS = {name: partial(build, source=name) for name in REFS}
for _name, _fn in BUILDS.items():
    BUILDERS.register(Builder(name=_name, task=TASK, build=_fn, inputs=INPUTS, image_prefix=IMAGE_PREFIX))
