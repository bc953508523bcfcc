"""The data manifest: every file and image a run will touch, checked before it starts.

Unlike the loader, which stops at the first bad file, ``check_data`` reads everything and
collects every problem, so one pass tells a researcher all that is wrong with a tree: per
task the train/test counts (and how many are text-only: no image), the malformed records
(file, index and id), the missing and the unreadable images (listed, with counts) and the
bytes on disk. ``stats`` gives the per-task table of answer lengths and distinct answers.

A record is judged by ``coin.data.records``, the loader's own validator, so whatever this
check passes the run accepts, and the reverse. On top of it the check knows the instruction
family: a derived family must recognise every human turn's instruction line.

Images are checked once per distinct path (records share images), as ``data.check_images``
says (``coin.data.images``): ``exists`` stats each (a regular file, not empty); ``open`` also
reads its header with PIL (no decoding) and refuses one declaring more than
``data.max_image_pixels`` pixels (a decompression bomb); ``decode`` also decodes every pixel
(a truncated body). A run under ``exists`` makes the ``open`` pass while its model loads
(``HeaderPass``, ``check_headers``), so a bad image still stops it before the first step, with
this same listing.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from coin.data.coin_json import DataError
from coin.benchmarks.layout import benchmark_of, benchmark_tasks, config_problems, data_roots, locate, layout_of
from coin.data.records import TrainRecord, check_records
from coin.tasks.protocol_sets import answer_keys
from coin.io import read_json
from coin.tasks.instructions import split_prompt

if TYPE_CHECKING:
    from coin.config import DataConfig


@dataclass
class TaskManifest:
    """What one task's files hold and what is wrong with them."""

    task: str
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    no_image: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})  # text-only records
    images: int = 0
    bytes: int = 0
    missing_files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)  # a train or test file with no record
    malformed: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)
    answer_problems: list[str] = field(default_factory=list)  # the answer source a protocol needs (coin.data.answers)
    answer_notes: list[str] = field(default_factory=list)  # mismatches that do not stop a run
    # (image root, {relative path: first record using it}) of the images that passed the check, for a
    # later header pass (check_headers); not a field: neither compared, nor written by to_dict
    image_index: ClassVar[tuple] = ()
    # per split, the file's records as validated ({"train": [Checked, ...]}), kept for the loader so a
    # run reads and validates each file once (``records``); not a field either
    checked: ClassVar[dict] = {}

    def records(self, split: str, path: Path | str):
        """The validated records of ``split`` when this manifest checked that very file, else None."""
        found = self.checked.get(split)
        if found is None or str(found[0]) != str(path) or any(c.problem is not None for c in found[1]):
            return None
        return found[1]

    def release(self) -> None:
        """Drop the kept records (once the loader has them)."""
        self.checked = {}

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.empty_files or self.malformed or self.missing_images
                    or self.unreadable_images or self.answer_problems)


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
                 for k in ("missing_files", "empty_files", "malformed", "missing_images", "unreadable_images",
                           "answer_problems")}
        parts = [f"{len(self.problems)} config problem(s)" if self.problems else "",
                 f"{count['missing_files']} data file(s) missing" if count["missing_files"] else "",
                 f"{count['empty_files']} data file(s) with no record" if count["empty_files"] else "",
                 f"{count['malformed']} malformed record(s)" if count["malformed"] else "",
                 f"{count['missing_images']} image(s) missing under {self.image_root}" if count["missing_images"] else "",
                 f"{count['unreadable_images']} unreadable image(s)" if count["unreadable_images"] else "",
                 f"{count['answer_problems']} answer source problem(s)" if count["answer_problems"] else ""]
        return ", ".join(p for p in parts if p)

    def format(self, limit: int = 20) -> str:
        """A table per task, then every problem (``limit`` lines per kind and task); ``no image``
        counts the text-only records (train and test)."""
        head = (f"{'task':<10} {'train':>9} {'test':>9} {'no image':>9} {'images':>9} {'missing':>8} {'unread':>7} "
                f"{'malformed':>9} {'size':>9}")
        lines = [f"data root {self.root} (images: {self.image_root}, instructions: {self.family})", head]
        for t in self.tasks:
            lines.append(f"{t.task:<10} {t.counts['train']:>9,} {t.counts['test']:>9,} "
                         f"{sum(t.no_image.values()):>9,} {t.images:>9,} "
                         f"{len(t.missing_images):>8,} {len(t.unreadable_images):>7,} {len(t.malformed):>9,} "
                         f"{human_bytes(t.bytes):>9}")
        lines.append(f"{'total':<10} {sum(t.counts['train'] for t in self.tasks):>9,} "
                     f"{sum(t.counts['test'] for t in self.tasks):>9,} "
                     f"{sum(sum(t.no_image.values()) for t in self.tasks):>9,} {sum(t.images for t in self.tasks):>9,} "
                     f"{'':>8} {'':>7} {'':>9} {human_bytes(self.total_bytes):>9}")
        lines += [f"config: {p}" for p in self.problems]
        for t in self.tasks:
            for label, items in (("missing file", t.missing_files), ("empty file", t.empty_files),
                                 ("malformed record", t.malformed),
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


def _read(path: Path, m: TaskManifest):
    """A data file's JSON (None when it cannot be read: said in ``m.malformed``)."""
    try:
        return read_json(path)
    except (ValueError, FileNotFoundError) as e:
        m.malformed.append(str(e))
        return None


def _check_file(path: Path, raw, split: str, task: str, m: TaskManifest, images: dict, derive: str | None,
                spec, cfg: DataConfig | None = None, image_root: Path | None = None) -> None:
    """Validate every record of one file (``coin.data.records``, the loader's own validator), as the
    benchmark ``spec`` prepares its rows ``raw`` for the loader; record images into ``images``
    (rel -> first user); keep the validated records for the loader (``TaskManifest.records``)."""
    if raw is None:
        return
    rows = raw
    try:
        if isinstance(rows, list) and image_root is not None:
            rows = spec.prepare_rows(task, split, rows, Path(path), Path(image_root))
    except (ValueError, FileNotFoundError) as e:
        m.malformed.append(str(e))
        return
    if not isinstance(rows, list):
        m.malformed.append(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
        return
    m.counts[split] = len(rows)
    m.bytes += path.stat().st_size
    if not rows:  # a task with nothing to train on or to score (assemble has no number for it)
        m.empty_files.append(f"{path}: holds no records (task {task}'s {split} file)")
    checked = list(check_records(rows, split, str(path), answer_keys(task)))
    m.checked = {**m.checked, split: (str(path), checked)}
    for c in checked:
        problem, rec = c.problem, c.record
        if rec is not None:
            rid = rec.id if isinstance(rec, TrainRecord) else rec.question_id
            if rec.image is None:
                m.no_image[split] += 1  # text-only: no image to check
            else:
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


def _check_images(image_root: Path, images: dict, m: TaskManifest, mode: str, limit: int | None = None) -> None:
    """Stat every distinct image (missing, not a file, empty), then read it as ``mode`` says
    (``coin.data.images.content_problem``); the images that passed are kept for a later header pass."""
    from coin.data.images import content_problem, file_problem

    m.images = len(images)
    passed = {}
    for rel, user in images.items():
        full = os.path.join(image_root, rel)
        try:
            st = os.stat(full)
        except OSError:
            m.missing_images.append(f"{user}: {rel}")
            continue
        m.bytes += st.st_size
        reason = file_problem(st) or content_problem(full, mode, limit)
        if reason is not None:
            m.unreadable_images.append(f"{user}: {rel} ({reason})")
        else:
            passed[rel] = user
    m.image_index = (str(image_root), passed)


def image_mode(cfg: DataConfig | None, open_images: bool | str | None = None) -> str:
    """The check ``data.check_images`` asks for, or ``open_images``: a mode; False: ``exists``;
    True: at least ``open`` (``decode`` when the config asks for it)."""
    mode = getattr(cfg, "check_images", "exists")
    if isinstance(open_images, str):
        return open_images
    if open_images is None:
        return mode
    return ("decode" if mode == "decode" else "open") if open_images else "exists"


def check_headers(manifest: Manifest, limit: int | None = None) -> Manifest:
    """``manifest`` with every image that passed its check read once more, as ``open`` reads it: the
    header parsed, at most ``limit`` pixels (default: this process's ``data.max_image_pixels``).

    What a run under ``exists`` does while its model loads (``HeaderPass``); the problems join the
    unreadable images, so ``format`` lists them as ``coin data check`` does. An image shared by
    several tasks is read once.
    """
    from dataclasses import replace

    from coin.data.images import content_problem

    seen: dict[str, str | None] = {}
    tasks = []
    for t in manifest.tasks:
        root, images = t.image_index or ("", {})
        bad = []
        for rel, user in images.items():
            full = os.path.join(root, rel)
            if full not in seen:
                try:
                    seen[full] = content_problem(full, "open", limit)
                except Exception as e:  # e.g. removed since the stat
                    seen[full] = f"{type(e).__name__}: {e}"
            if seen[full] is not None:
                bad.append(f"{user}: {rel} ({seen[full]})")
        tasks.append(replace(t, unreadable_images=t.unreadable_images + bad) if bad else t)
    return replace(manifest, tasks=tasks)


class HeaderPass:
    """``check_headers`` in a thread, started as a run's model begins to load; ``problems`` waits for it.

    ``problems()``: None when every header read, else the manifest listing them (``format``).
    """

    def __init__(self, manifest: Manifest, limit: int | None = None) -> None:
        import threading

        self._result: Manifest | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(manifest, limit), name="coin-image-headers",
                                         daemon=True)
        self._thread.start()

    def _work(self, manifest: Manifest, limit: int | None) -> None:
        try:
            self._result = check_headers(manifest, limit)
        except BaseException as e:  # raised in the run's thread by problems()
            self._error = e

    def problems(self) -> Manifest | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return None if self._result is None or self._result.ok else self._result


def check_task(root: Path, image_root: Path, family: str, task: str, cfg: DataConfig | None = None,
               open_images: bool | str = True, needs_ten: bool = False) -> TaskManifest:
    """The manifest of one task: both files, every record, every distinct image, its answer source.

    ``open_images``: how far images are read (``image_mode``: ``exists``, ``open``, ``decode``).
    ``needs_ten``: the task's scoring protocol needs ten answers per test record, so they
    must be in the records or in ``data.answers.<Task>`` (``coin.data.answers``).
    """
    m = TaskManifest(task)
    spec = benchmark_of(cfg)  # looked up once for the task's files, records and notes
    images: dict[str, str] = {}
    raw: dict[str, object] = {}  # each file read once, for the records, the answer source and the notes
    for split in ("train", "test"):
        try:
            src = spec.locate(root, family, task, split, cfg)
        except DataError as e:
            m.missing_files.append(str(e))
            continue
        m.files[split] = str(src.path)
        raw[split] = _read(src.path, m)
        _check_file(src.path, raw[split], split, task, m, images, src.derive, spec, cfg, image_root)
    _check_images(image_root, images, m, image_mode(cfg, open_images), getattr(cfg, "max_image_pixels", None))
    test_rows = raw.get("test") if isinstance(raw.get("test"), list) else None
    _check_answers(root, task, cfg, m, needs_ten, test_rows)
    problems, found = spec.notes(task, root, cfg, test_rows)  # e.g. a caption reference file whose ids do not match
    m.answer_problems += problems
    m.answer_notes += found
    return m


def _check_answers(root: Path, task: str, cfg: DataConfig | None, m: TaskManifest, needs_ten: bool,
                   rows: list | None) -> None:
    from coin.data.answers import answer_problems, answer_source

    source = answer_source(root, getattr(cfg, "answers", None), task)
    if "test" not in m.files or (source is None and not needs_ten) or rows is None:
        return  # an unreadable file is reported as malformed already
    records = [r for r in rows if isinstance(r, dict)]
    m.answer_problems, m.answer_notes = answer_problems(task, records, source, m.files["test"], needs_ten)


def check_data(cfg: DataConfig, tasks: list[str] | None = None, open_images: bool | str | None = None,
               protocols: dict | None = None) -> Manifest:
    """Check every file and image ``cfg`` points at, for ``tasks`` (default: every task of its benchmark).

    ``open_images`` defaults to ``data.check_images`` (``image_mode``; a run's default, ``exists``,
    only stats each image here: reading millions of headers from network storage takes far longer,
    so the run reads them while its model loads, ``HeaderPass``). ``protocols`` is the
    ``eval.protocol`` choice; given (even empty), a task whose protocol needs ten answers
    and has no source for them is a problem.
    """
    tasks = list(tasks or benchmark_tasks(cfg))
    open_images = image_mode(cfg, open_images)
    problems = config_problems(cfg)
    layout = layout_of(cfg, tasks)
    root, image_root = layout.root, layout.image_root
    if problems:
        return Manifest(str(root), str(image_root), cfg.instructions, [], problems)
    from coin.tasks.protocol_sets import needs_ten_answers

    out = [check_task(root, layout.images(t), cfg.instructions, t, cfg, open_images,
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
