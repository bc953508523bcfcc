"""What every builder shares: the registry, reading a source's files, making CoIN records, writing them.

A builder reads one source dataset's own annotation files and returns CoIN records in the
Original family (other families are derived at load time by ``coin.tasks.instructions``).
Each builder module registers itself on its last line
(``BUILDERS.register(Builder(name=SOURCE, task=TASK, build=build, ...))``), so a new
source, a plugin's included, is one file. Records carry a ``source`` key, so the three
RefCOCO sources can be built one after the other into the one Grounding task: writing a
source replaces only that source's records.
"""

from __future__ import annotations

from collections import Counter
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from coin.data.coin_json import DataError
from coin.io import atomic_write_json, read_json
from coin.registry import Registry
from coin.tasks import TASKS, get_task


@dataclass
class Built:
    """A source's records: CoIN training records and CoIN test records."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Builder:
    """One source dataset (``name``): the task it feeds, its build function and what its raw folder holds.

    ``build(raw, prefix, seed, **options) -> Built``; ``prefix`` is where the source's images
    lie relative to the image root (the CoIN README layout by default).
    """

    name: str
    task: str
    build: Callable[..., Built]
    inputs: str
    image_prefix: str


    def check(self) -> list[str]:
        """Problems with this declaration (the task it feeds must be registered)."""
        return [] if self.task in TASKS else [TASKS.unknown_message(self.task)]


BUILDERS: Registry[Builder] = Registry("data source", builtins=("coin.benchmarks.coin.builders",), check=Builder.check)


def register_builder(name: str, task: str, build: Callable[..., Built], inputs: str, image_prefix: str) -> Builder:
    """Deprecated (0.x): use ``BUILDERS.register(Builder(name=..., task=..., build=..., inputs=...,
    image_prefix=...))``."""
    import warnings

    warnings.warn("register_builder(...) is deprecated; use BUILDERS.register(Builder(name=..., task=..., ...))",
                  DeprecationWarning, stacklevel=2)
    return BUILDERS.register(Builder(name=name, task=task, build=build, inputs=inputs, image_prefix=image_prefix))


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


def find_file(raw: Path, names: Iterable[str], source: str) -> Path:
    """The first of ``names`` found in ``raw`` (or one folder below); an error lists them all."""
    names = list(names)
    for name in names:
        for cand in (raw / name, *sorted(raw.glob(f"*/{name}"))):
            if cand.is_file():
                return cand
    raise DataError(f"{source}: none of {', '.join(names)} found in {raw}")


def read_source_json(path: Path, source: str) -> Any:
    """A source's JSON annotation file; errors name the source and the file."""
    try:
        return read_json(path)
    except (ValueError, FileNotFoundError) as e:
        raise DataError(f"{source}: {e}") from None


def need(rec: Any, keys: Iterable[str], where: str) -> None:
    """Raise ``DataError`` naming ``where`` when ``rec`` is not an object with every key."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
    for key in keys:
        if key not in rec:
            raise DataError(f"{where}: missing key {key!r}")


def records_of(data: Any, key: str | None, path: Path) -> list:
    """``data[key]`` (or ``data``) as a list; a wrong shape is an error naming the file."""
    rows = data.get(key) if key and isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a list{f' under {key!r}' if key else ''}, got {type(rows).__name__}")
    return rows


def majority(answers: Iterable[str]) -> str:
    """The most frequent answer (ties: the first given), whitespace-trimmed."""
    clean = [str(a).strip() for a in answers if str(a).strip()]
    if not clean:
        return ""
    counts = Counter(clean)
    best = max(counts.values())
    return next(a for a in clean if counts[a] == best)


def image_path(prefix: str, *parts: str) -> str:
    """A POSIX path relative to the image root."""
    return "/".join(p.strip("/") for p in (prefix, *parts) if p and p.strip("/"))


def prompt(task: str, *lines: str) -> str:
    """Question lines followed by the task's Original format-instruction line."""
    body = [str(x).strip() for x in lines if str(x).strip()]
    return "\n".join(body + [get_task(task).instruction])


def train_record(rid: str, image: str | None, text: str, answer: str, source: str) -> dict:
    """A released-format training record (LLaVA conversation); ``image`` None: a text-only record,
    without the ``image`` key and the ``<image>`` line, as LLaVA writes one."""
    head = {"id": str(rid)} if image is None else {"id": str(rid), "image": image}
    return {**head, "source": source, "conversations": [
        {"from": "human", "value": ("" if image is None else "<image>\n") + text}, {"from": "gpt", "value": answer}]}


def test_record(qid: str, image: str | None, text: str, answer: str, source: str, **extra: Any) -> dict:
    """A released-format test record (``image`` None: text-only, no ``image`` key); ``extra`` adds
    ``answers``, ``answer_bbox``, ``size``."""
    head = {"question_id": str(qid)} if image is None else {"question_id": str(qid), "image": image}
    return {**head, "text": text, "answer": answer, "source": source, **extra}


def build_from_splits(rows_of, raw: Path, prefix: str, train_split: str, test_split: str, source: str) -> Built:
    """A ``Built`` from ``rows_of(raw, split, prefix)`` rows ``(id, image, text, answer, answers)``.

    Training records take the majority answer; test records keep every annotator's answer.
    """
    built = Built()
    for qid, image, text, answer, _ in rows_of(raw, train_split, prefix):
        built.train.append(train_record(qid, image, text, answer, source))
    for qid, image, text, answer, answers in rows_of(raw, test_split, prefix):
        built.test.append(test_record(qid, image, text, answer, source, answers=answers))
    return built


def check_answer(answer: str, where: str) -> str:
    """``answer``, or a ``DataError`` naming ``where`` when it is empty (a record needs a target)."""
    if not answer:
        raise DataError(f"{where}: no answer")
    return answer


def write_built(out: str | Path, builder: Builder, built: Built) -> dict[str, int]:
    """Write ``built`` into ``out/Instructions_Original/<Task>/{train,test}.json``.

    Records of other sources already in those files are kept (sorted by source name), so
    RefCOCO, RefCOCO+ and RefCOCOg accumulate into Grounding; ids must stay unique.
    """
    folder = Path(out) / "Instructions_Original" / get_task(builder.task).folder
    counts = {}
    for split, rows, key in (("train", built.train, "id"), ("test", built.test, "question_id")):
        path = folder / f"{split}.json"
        kept = [r for r in (read_json(path) if path.is_file() else []) if r.get("source") != builder.name]
        merged = sorted(kept + rows, key=lambda r: str(r.get("source", "")))  # stable within a source
        ids = Counter(str(r[key]) for r in merged)
        dup = [i for i, n in ids.items() if n > 1]
        if dup:
            raise DataError(f"{builder.name}: {len(dup)} duplicate {key}(s) in {path}, e.g. {dup[0]!r}")
        atomic_write_json(path, merged, indent=None)
        counts[split] = len(rows)
    return counts

