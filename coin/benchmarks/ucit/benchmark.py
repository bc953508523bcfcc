"""UCIT (HiDe-LLaVA, ACL 2025): six tasks whose answers are letters, words, numbers and captions.

Layout (the ``HaiyangGuo/UCIT`` dataset as SPEC section 10 records it; ``data.root`` is the
folder holding ``instructions/``, ``data.image_root`` the ``datasets/`` folder the records'
image paths are relative to, default ``<root>/datasets`` when it exists)::

    instructions/<Task>/test_3000.json         3,000 test records per task
    instructions/<Task>/train.json             (or train_4w.json, train_brief_4w.json: the first found)
    instructions/<Task>/val_coco_type_3000.json  caption tasks: references in COCO annotation format

The README and the scripts name some folders differently (``CLEVR`` / ``CLEVR-Math``,
``Flickr30k`` / ``Flickr30k-cap``, ``VizWiz`` / ``VizWiz-caption``): every spelling is tried.
Records are LLaVA conversations (train) and ``{question_id, image, text, answer}`` (test),
the format CoIN's loaders read. Caption references are joined into the test records as
``references``: UCIT numbers its predictions 1..N in test-file order, so record k takes the
captions of image id k (1-based). A reference file that lacks ids (an earlier VizWiz file had
2,999 ids for 3,000 images) is named by ``coin data check``; the records without references
are scored against their own ``answer``.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from coin.benchmarks.spec import BENCHMARKS, BenchmarkSpec, path_override
from coin.errors import DataError, ReferenceFileError
from coin.io import read_json
from coin.tasks import get_task

if TYPE_CHECKING:
    from coin.config import DataConfig

ORDER = ("ImageNet-R", "ArxivQA", "VizWiz-Caption", "IconQA", "CLEVR-Math", "Flickr30k")
FOLDERS = {  # every spelling of a task's folder seen in UCIT's README and scripts
    "ImageNet-R": ("ImageNet-R",),
    "ArxivQA": ("ArxivQA",),
    "VizWiz-Caption": ("VizWiz-caption", "VizWiz", "VizWiz-Caption"),
    "IconQA": ("IconQA",),
    "CLEVR-Math": ("CLEVR-Math", "CLEVR"),
    "Flickr30k": ("Flickr30k-cap", "Flickr30k"),
}
FILES = {"test": ("test_3000.json", "test.json"), "train": ("train.json", "train_4w.json", "train_brief_4w.json")}
REFERENCES = "val_coco_type_3000.json"
_LIST = 5


@lru_cache(maxsize=8)
def _read_references(path: str, mtime: float) -> dict[int, list[str]]:
    """Captions by image id from a COCO annotation file (``annotations``: ``image_id``, ``caption``)."""
    data = read_json(path)
    notes = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(notes, list):
        raise ReferenceFileError(f"{path}: expected a COCO annotation file (an object with an 'annotations' list)")
    out: dict[int, list[str]] = {}
    for k, a in enumerate(notes):
        if not isinstance(a, dict) or "image_id" not in a or not str(a.get("caption", "")).strip():
            raise ReferenceFileError(f"{path}: annotation {k} needs 'image_id' and a non-empty 'caption', got {a!r}")
        try:
            out.setdefault(int(a["image_id"]), []).append(str(a["caption"]))
        except (TypeError, ValueError):
            raise ReferenceFileError(f"{path}: annotation {k} has a non-integer image_id {a['image_id']!r}") from None
    return out


def read_references(path: Path) -> dict[int, list[str]]:
    """Captions by image id (cached per file and modification time)."""
    return _read_references(str(path), path.stat().st_mtime)


def is_caption(task: str) -> bool:
    return get_task(task).scorer == "caption"


class UcitBenchmark(BenchmarkSpec):
    """UCIT: ImageNet-R, ArxivQA, VizWiz-Caption, IconQA, CLEVR-Math, Flickr30k (HiDe-LLaVA's stream)."""

    name = "ucit"
    doc = "UCIT (HiDe-LLaVA): six tasks, upper-cased exact match and COCO caption metrics"
    sources = "the HaiyangGuo/UCIT dataset: instructions/<Task>/{train,test_3000}.json, images under datasets/"
    orders = {"paper": ORDER}

    def roots(self, cfg: DataConfig, tasks: list[str]) -> tuple[Path, Path]:
        root, image_root = super().roots(cfg, tasks)
        if not cfg.image_root and (root / "datasets").is_dir():
            image_root = root / "datasets"
        return root, image_root

    def candidates(self, root: Path, task: str, split: str) -> list[Path]:
        return [base / folder / name for base in (root / "instructions", root) for folder in FOLDERS[task]
                for name in FILES[split]]

    def references(self, root: Path, cfg: DataConfig | None, task: str) -> Path:
        """The caption reference file: ``data.paths.<Task>.references``, else beside the test file."""
        if (p := path_override(root, cfg, task, "references")) is not None:
            return p
        looked = [base / folder / REFERENCES for base in (root / "instructions", root) for folder in FOLDERS[task]]
        return next((p for p in looked if p.is_file()), looked[0])

    def prepare(self, task: str, split: str, items: list, root: Path, cfg: DataConfig | None) -> list:
        """Caption test records get ``references`` (record k: image id k + 1) when the reference file is there."""
        if split != "test" or not is_caption(task):
            return items
        path = self.references(root, cfg, task)
        if not path.is_file():
            return items
        refs = read_references(path)
        return [replace(r, extra={**r.extra, "references": refs[k + 1]}) if k + 1 in refs else r for k, r in enumerate(items)]

    def notes(self, task: str, root: Path, cfg: DataConfig | None,
              test_rows: list | None) -> tuple[list[str], list[str]]:
        """A caption task's reference file: missing (a note), unreadable (a problem), ids not matching (a note)."""
        if not is_caption(task) or test_rows is None:
            return [], []
        path = self.references(root, cfg, task)
        if not path.is_file():
            return [], [f"no reference file {path}: each record is scored against its own `answer` "
                        f"(UCIT scored against the references; data.paths.{task}.references names the file)"]
        try:
            refs = read_references(path)
        except (DataError, ValueError) as e:
            return [f"data.paths.{task}.references: {e}"], []
        n = len(test_rows)
        lacking = [k + 1 for k in range(n) if k + 1 not in refs]
        extra = sorted(i for i in refs if not 1 <= i <= n)
        notes = []
        if lacking:
            ids = ", ".join(f"{i} (question_id {test_rows[i - 1].get('question_id')})" for i in lacking[:_LIST])
            notes.append(f"{path} has captions for {len(refs)} image ids, the test file {n} records: {len(lacking)} "
                         f"record(s) without references are scored against their own `answer`, e.g. image id {ids}")
        if extra:
            notes.append(f"{path}: {len(extra)} image id(s) match no test record (ids run 1..{n}), "
                         f"e.g. {', '.join(map(str, extra[:_LIST]))}")
        return [], notes


SPEC = BENCHMARKS.register(UcitBenchmark())
