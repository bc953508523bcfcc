"""The data manifest: every file and image a run will touch, checked before it starts.

Unlike the loader, which stops at the first bad file, ``check_data`` reads everything and
collects every problem, so one pass tells a researcher all that is wrong with a tree: per
task the train/test counts, the malformed records (file, index and id), the missing and the
unreadable images (listed, with counts) and the bytes on disk. ``stats`` gives the per-task
table of answer lengths and distinct answers.

A record is judged by ``coin.data.records``, the loader's own validator, so whatever this
check passes the run accepts, and the reverse. On top of it the check knows the instruction
family: a derived family must recognise every human turn's instruction line.

Images are checked once per distinct path (records share images), by ``os.stat`` and,
unless ``open_images=False``, by reading the image header with PIL (no decoding).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coin.data.coin_json import DataError
from coin.data.layout import benchmark_tasks, config_problems, data_roots, locate, notes, prepare_rows, task_image_root
from coin.data.records import TrainRecord, check_records
from coin.io import read_json
from coin.tasks import get_task
from coin.tasks.instructions import split_prompt

if TYPE_CHECKING:
    from coin.config import DataConfig


@dataclass
class TaskManifest:
    """What one task's files hold and what is wrong with them."""

    task: str
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    images: int = 0
    bytes: int = 0
    missing_files: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)
    answer_problems: list[str] = field(default_factory=list)  # the answer source a protocol needs (coin.data.answers)
    answer_notes: list[str] = field(default_factory=list)  # mismatches that do not stop a run

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.malformed or self.missing_images or self.unreadable_images
                    or self.answer_problems)


@dataclass
class Manifest:
    """The whole tree's manifest; ``ok`` is False when any task has a problem."""

    root: str
    image_root: str
    family: str
    tasks: list[TaskManifest]
    problems: list[str] = field(default_factory=list)  # config-level problems

    @property
    def ok(self) -> bool:
        return not self.problems and all(t.ok for t in self.tasks)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tasks)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "total_bytes": self.total_bytes}

    def summary(self) -> str:
        """One line: how many problems of each kind ("" when there are none)."""
        count = {k: sum(len(getattr(t, k)) for t in self.tasks)
                 for k in ("missing_files", "malformed", "missing_images", "unreadable_images", "answer_problems")}
        parts = [f"{len(self.problems)} config problem(s)" if self.problems else "",
                 f"{count['missing_files']} data file(s) missing" if count["missing_files"] else "",
                 f"{count['malformed']} malformed record(s)" if count["malformed"] else "",
                 f"{count['missing_images']} image(s) missing under {self.image_root}" if count["missing_images"] else "",
                 f"{count['unreadable_images']} unreadable image(s)" if count["unreadable_images"] else "",
                 f"{count['answer_problems']} answer source problem(s)" if count["answer_problems"] else ""]
        return ", ".join(p for p in parts if p)

    def format(self, limit: int = 20) -> str:
        """A table per task, then every problem (``limit`` lines per kind and task)."""
        head = f"{'task':<10} {'train':>9} {'test':>9} {'images':>9} {'missing':>8} {'unread':>7} {'malformed':>9} {'size':>9}"
        lines = [f"data root {self.root} (images: {self.image_root}, instructions: {self.family})", head]
        for t in self.tasks:
            lines.append(f"{t.task:<10} {t.counts['train']:>9,} {t.counts['test']:>9,} {t.images:>9,} "
                         f"{len(t.missing_images):>8,} {len(t.unreadable_images):>7,} {len(t.malformed):>9,} "
                         f"{human_bytes(t.bytes):>9}")
        lines.append(f"{'total':<10} {sum(t.counts['train'] for t in self.tasks):>9,} "
                     f"{sum(t.counts['test'] for t in self.tasks):>9,} {sum(t.images for t in self.tasks):>9,} "
                     f"{'':>8} {'':>7} {'':>9} {human_bytes(self.total_bytes):>9}")
        lines += [f"config: {p}" for p in self.problems]
        for t in self.tasks:
            for label, items in (("missing file", t.missing_files), ("malformed record", t.malformed),
                                 ("missing image", t.missing_images), ("unreadable image", t.unreadable_images),
                                 ("answer source problem", t.answer_problems), ("answer note", t.answer_notes)):
                if items:
                    lines.append(f"{t.task}: {len(items)} {label}(s)")
                    lines += [f"  {x}" for x in items[:limit]]
                    if len(items) > limit:
                        lines.append(f"  ... and {len(items) - limit} more")
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _check_file(path: Path, split: str, task: str, m: TaskManifest, images: dict, derive: str | None,
                cfg: DataConfig | None = None, image_root: Path | None = None) -> None:
    """Validate every record of one file (``coin.data.records``, the loader's own validator), read as
    the benchmark prepares it for the loader (``coin.data.layout.read_rows``); record images into
    ``images`` (rel -> first user)."""
    try:
        rows = read_json(path)
        if isinstance(rows, list) and image_root is not None:
            rows = prepare_rows(rows, path, cfg, task, split, image_root)
    except (ValueError, FileNotFoundError) as e:
        m.malformed.append(str(e))
        return
    if not isinstance(rows, list):
        m.malformed.append(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        return
    m.counts[split] = len(rows)
    m.bytes += path.stat().st_size
    box = get_task(task).answer_form == "box"
    for c in check_records(rows, split, str(path), box):
        problem, rec = c.problem, c.record
        if rec is not None:
            rid = rec.id if isinstance(rec, TrainRecord) else rec.question_id
            images.setdefault(rec.image, f"{task} {split} {rid}")
            if derive is not None:
                problem = _family_problem(rec, task, derive)
        if problem is not None:
            m.malformed.append(f"{c.where}: {problem}")


def _family_problem(rec, task: str, derive: str) -> str | None:
    """Why ``derive``'s lines cannot replace this record's instruction lines (None when they can).

    The family rewrites every human turn (``coin.tasks.instructions``), so each is checked.
    """
    lines = rec.questions if isinstance(rec, TrainRecord) else [rec.text]
    try:
        for n, line in enumerate(lines):
            split_prompt(line, task, f"turn {n}" if n else "prompt")
    except ValueError as e:
        return f"cannot apply the {derive} family: {e}"
    return None


def _check_images(image_root: Path, images: dict, m: TaskManifest, open_images: bool) -> None:
    from PIL import Image

    m.images = len(images)
    for rel, user in images.items():
        full = os.path.join(image_root, rel)
        try:
            size = os.stat(full).st_size
        except OSError:
            m.missing_images.append(f"{user}: {rel}")
            continue
        m.bytes += size
        if size == 0:
            m.unreadable_images.append(f"{user}: {rel} (empty file)")
        elif open_images:
            try:
                with Image.open(full) as im:
                    im.size  # the header is parsed on open; no pixel is decoded
            except Exception as e:  # PIL raises many types for a bad file
                m.unreadable_images.append(f"{user}: {rel} ({type(e).__name__}: {e})")


def check_task(root: Path, image_root: Path, family: str, task: str, cfg: DataConfig | None = None,
               open_images: bool = True, needs_ten: bool = False) -> TaskManifest:
    """The manifest of one task: both files, every record, every distinct image, its answer source.

    ``needs_ten``: the task's scoring protocol needs ten answers per test record, so they
    must be in the records or in ``data.answers.<Task>`` (``coin.data.answers``).
    """
    m = TaskManifest(task)
    images: dict[str, str] = {}
    for split in ("train", "test"):
        try:
            src = locate(root, family, task, split, cfg)
        except DataError as e:
            m.missing_files.append(str(e))
            continue
        m.files[split] = str(src.path)
        _check_file(src.path, split, task, m, images, src.derive, cfg, image_root)
    _check_images(image_root, images, m, open_images)
    _check_answers(root, task, cfg, m, needs_ten)
    _check_benchmark(root, task, cfg, m)
    return m


def _check_benchmark(root: Path, task: str, cfg: DataConfig | None, m: TaskManifest) -> None:
    """What the benchmark itself finds about the task (e.g. a caption reference file whose ids do not match)."""
    try:
        rows = read_json(m.files["test"]) if "test" in m.files else None
    except (ValueError, FileNotFoundError):
        rows = None  # reported as malformed already
    problems, found = notes(root, cfg, task, rows if isinstance(rows, list) else None)
    m.answer_problems += problems
    m.answer_notes += found


def _check_answers(root: Path, task: str, cfg: DataConfig | None, m: TaskManifest, needs_ten: bool) -> None:
    from coin.data.answers import answer_problems, answer_source

    source = answer_source(root, getattr(cfg, "answers", None), task)
    if "test" not in m.files or (source is None and not needs_ten):
        return
    try:
        rows = read_json(m.files["test"])
    except (ValueError, FileNotFoundError):
        return  # reported as malformed already
    records = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else None
    m.answer_problems, m.answer_notes = answer_problems(task, records, source, m.files["test"], needs_ten)


def check_data(cfg: DataConfig, tasks: list[str] | None = None, open_images: bool | None = None,
               protocols: dict | None = None) -> Manifest:
    """Check every file and image ``cfg`` points at, for ``tasks`` (default: every task of its benchmark).

    ``open_images`` defaults to ``data.check_images == "open"`` (a run's default, ``exists``,
    only stats each image: reading millions of headers from network storage takes far longer). ``protocols`` is the
    ``eval.protocol`` choice; given (even empty), a task whose protocol needs ten answers
    and has no source for them is a problem.
    """
    tasks = list(tasks or benchmark_tasks(cfg))
    if open_images is None:
        open_images = getattr(cfg, "check_images", "exists") == "open"
    problems = config_problems(cfg)
    root, image_root = data_roots(cfg, tasks)
    if problems:
        return Manifest(str(root), str(image_root), cfg.instructions, [], problems)
    from coin.eval.protocols import needs_ten_answers

    out = [check_task(root, task_image_root(root, image_root, cfg, t), cfg.instructions, t, cfg, open_images,
                      needs_ten=protocols is not None and needs_ten_answers(t, protocols))
           for t in tasks]
    return Manifest(str(root), str(image_root), cfg.instructions, out)


def _answer_lengths(rows: list, split: str) -> list[str]:
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        if split == "train":
            conv = r.get("conversations") or []
            a = conv[1].get("value", "") if len(conv) > 1 and isinstance(conv[1], dict) else ""
        else:
            a = r.get("answer", "")
        out.append(str(a).strip())
    return out


def stats(cfg: DataConfig, tasks: list[str] | None = None) -> list[dict]:
    """Per task: counts, answer length in words (mean, median, p90, max), distinct answers."""
    tasks = list(tasks or benchmark_tasks(cfg))
    root, _ = data_roots(cfg, tasks)
    table = []
    for task in tasks:
        row: dict = {"task": task}
        for split in ("train", "test"):
            try:
                rows = read_json(locate(root, cfg.instructions, task, split, cfg).path)
            except (DataError, ValueError, FileNotFoundError):
                rows = None
            answers = _answer_lengths(rows, split) if isinstance(rows, list) else []
            lengths = sorted(len(a.split()) for a in answers)
            row[split] = {
                "n": len(answers) if rows is not None else None,
                "distinct_answers": len(set(answers)),
                "answer_words": {"mean": round(statistics.fmean(lengths), 2) if lengths else None,
                                 "median": statistics.median(lengths) if lengths else None,
                                 "p90": lengths[int(0.9 * (len(lengths) - 1))] if lengths else None,
                                 "max": lengths[-1] if lengths else None},
            }
        table.append(row)
    return table


def format_stats(table: list[dict]) -> str:
    """``stats`` as a text table."""
    def cell(v: object) -> str:
        return "–" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = [f"{'task':<10} {'split':<5} {'n':>9} {'distinct':>9} {'words mean':>10} {'median':>6} {'p90':>4} {'max':>4}"]
    for row in table:
        for split in ("train", "test"):
            s, w = row[split], row[split]["answer_words"]
            lines.append(f"{row['task']:<10} {split:<5} {cell(s['n']):>9} {cell(s['distinct_answers'] if s['n'] is not None else None):>9} "
                         f"{cell(w['mean']):>10} {cell(w['median']):>6} {cell(w['p90']):>4} {cell(w['max']):>4}")
    return "\n".join(lines)
