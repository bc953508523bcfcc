"""``coin run --dry-run``: what a run will do, without loading a model or reading images.

Stages, training steps per stage, effective batch, adapter, and every file the run will
read (data and model weights), each marked present or missing, so a 3-day GPU job is
checked in a second.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from coin import requirements
from coin.adapters import describe as adapter_line
from coin.config import ModelConfig, RunConfig
from coin.engine.limits import limit_line
from coin.schedule import SCHEDULES
from coin.tasks.image_modes import eval_image_step
from coin.models import BACKBONES
from coin.models.backbone import parsed_section
from coin.tasks.orders import resolve_order


def _rows(path: Path) -> list | None:
    """A data file's JSON list (None: unreadable or not a list)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        return data if isinstance(data, list) else None
    except (OSError, ValueError):
        return None


def image_heads(rows: list | None) -> set[str] | None:
    """The image folders a file's records name: each relative image path's first two folders
    (``COCO2014/train2014``, ``GQA/images``); None without records to read."""
    if rows is None:
        return None
    heads = set()
    for r in rows:
        rel = r.get("image") if isinstance(r, dict) else None
        if isinstance(rel, str) and rel and not rel.startswith("/"):
            parts = [x for x in rel.replace("\\", "/").split("/") if x not in ("", ".")][:-1]
            if parts and ".." not in parts[:2]:
                heads.add("/".join(parts[:2]))
    return heads


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKENIZER_KEYS = ("model.path", "model.lm_path")  # the folders a backbone reads its tokenizer from


def tokenizer_line(folder: Path) -> tuple[str, str | None] | None:
    """The dry run's line for a local folder's tokenizer files, and the problem (None: fine), as the
    load checks them (``coin.models.tokenizer_check``); None for a folder without tokenizer_config.json.
    transformers is imported only here, for a folder that has one."""
    if not (folder / "tokenizer_config.json").exists():
        return None
    from coin.models.tokenizer_check import TokenizerError, check_tokenizer_files, declared_class

    try:
        check_tokenizer_files(folder)
        return f"  tokenizer {folder}: ok ({declared_class(folder) or 'no tokenizer_class declared'})", None
    except TokenizerError as e:
        return f"  tokenizer {folder}: {str(e).removeprefix(f'tokenizer folder {folder}: ')}", str(e)


def model_files(model: ModelConfig, fetches: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Lines for the weights a run will read (the backbone's ``weights``), and the missing ones;
    ``fetches`` (when given) gets the commands that fetch each missing one (``WeightPath.fetch``).

    A value the backbone allows to be a hub id (``model.path``) that looks like ``org/name``
    and is not a local folder is reported as such and not counted missing (nothing is fetched
    here); any other missing file or folder is missing. A present model or LM folder with a
    tokenizer_config.json gets a line for its tokenizer files (``tokenizer_line``); a problem
    there counts as missing.
    """
    lines: list[str] = []
    missing: list[str] = []
    fetches = [] if fetches is None else fetches
    model = parsed_section(model)  # a section built by hand has its options parsed
    for w in BACKBONES.get(model.name).weights(model):
        p = Path(w.path).expanduser()
        present = p.is_dir() if w.kind == "folder" else p.is_file()
        if present:
            state = "present"
        elif w.hub and not p.exists() and _HUB_ID.match(w.path):
            state = "hub id, not checked offline"
        else:
            state = "MISSING" if not p.exists() else f"MISSING (not a {w.kind})"
            missing.append(str(p))
            fetches.append(f"  {w.key} -> {p}")
            fetches += [f"    {line.format(path=p, dir=p.parent)}" for line in w.fetch] or \
                ["    # no fetch command known for this backbone's file; see its model card"]
        lines.append(f"  {w.key + ':':<22}{p}  ({state})")
        if present and w.kind == "folder" and w.key in _TOKENIZER_KEYS and (tok := tokenizer_line(p)) is not None:
            lines.append(tok[0])
            if tok[1] is not None:
                missing.append(tok[1])
    return lines, missing


def _task_file(root: Path, cfg: RunConfig, task: str, split: str):
    """The source a run reads for ``task``'s ``split`` (the run's own lookup, ``coin.benchmarks.layout.locate``:
    its file, the family derived from it, where its prompts come from); when nothing is there, a source
    whose path is the file to provide as the benchmark's layout names it (CoIN: the override, else the
    Original file) and whose origin lists the other names accepted (TextVQA: ``val.json``)."""
    from coin.benchmarks.spec import TaskSource
    from coin.data.coin_json import DataError
    from coin.benchmarks.layout import expected_file, locate
    from coin.tasks import TASKS

    try:
        return locate(root, cfg.data.instructions, task, split, cfg.data)
    except DataError:  # the benchmark's own layout says which file to provide (coin.benchmarks)
        p = expected_file(root, cfg.data, task, split)
        names = TASKS.get(task).split_files(split) if task in TASKS else ()
        others = [n for n in names if n != p.name]
        return TaskSource(p, None, "MISSING" + (f" (also accepted: {', '.join(others)})" if others else ""))


def fetch_lines(cfg: RunConfig, root: Path, image_root: Path, files: dict, heads: dict,
                answers_missing: dict) -> tuple[list[str], list[str]]:
    """(the dry run's "to fetch" block, the image folders the records name that are missing).

    From the benchmark's table of sources (``BenchmarkSpec.fetch``; CoIN: ``coin.benchmarks.coin.benchmark.SOURCES``):
    the release's command when one of its files is missing, each task's image sources whose folder
    is missing under the task's image root (the folders its records name, or without records the
    source's own folder), and the answer files of ``data.answers`` that are missing.
    """
    from coin.benchmarks.layout import benchmark_of, task_image_root

    table = benchmark_of(cfg.data).fetch
    lines: list[str] = []
    missing: list[str] = []
    paths = cfg.data.paths or {}  # a missing data.paths override is the user's own file: no command fetches it
    gone = [(t, sp) for (t, sp), src in files.items() if not src.path.is_file()
            and not (isinstance(paths.get(t), dict) and paths[t].get(sp))]
    if table is not None and table.release is not None and gone:
        lines += [f"  {table.release.name}: {len(gone)} file(s) missing under {root}",
                  *(f"    {c}" for c in table.release.lines(root, image_root))]
    shown: dict = {}
    for t in dict.fromkeys(t for t, _ in files):
        ir = task_image_root(root, image_root, cfg.data, t)
        fetches = table.images.get(t, ()) if table is not None else ()
        named = heads.get(t)
        if named is None:  # no records to read: the sources' own folders
            for f in fetches:
                if not f.optional and not (ir / f.folder).is_dir():
                    shown.setdefault((f, str(ir)), []).append(t)
            continue
        for head in sorted(named):
            if (ir / head).is_dir():
                continue
            if image_root.is_dir() or ir != image_root:
                missing.append(f"{ir / head} (images of {t})")
            match = [f for f in fetches if head == f.folder or head.startswith(f.folder + "/")
                     or f.folder.startswith(head + "/")]
            for f in match:
                shown.setdefault((f, str(ir)), []).append(t)
            if not match:
                lines.append(f"  {ir / head} ({t}'s images): no fetch command known; see the task's source dataset")
    for (f, ir), tasks in shown.items():
        lines += [f"  {f.name} -> {Path(ir) / f.folder} ({', '.join(dict.fromkeys(tasks))})",
                  *(f"    {c}" for c in f.lines(root, ir))]
    for t, path in answers_missing.items():
        f = table.answers.get(t) if table is not None else None
        if f is not None:
            lines += [f"  {f.name} -> {path} (data.answers.{t})", *(f"    {c}" for c in f.lines(root, image_root, path))]
    return lines, missing


def scoring_plan(cfg: RunConfig, order: list[str], files: dict,
                 answers_missing: dict | None = None) -> tuple[list[str], list[str]]:
    """Per task, the protocol behind each table and its answer source; the answer sources that are missing
    (also put in ``answers_missing``, task -> path, for the fetch commands).

    The same check as ``coin data check`` and the run (``coin.data.answers``): a task whose
    protocol needs ten answers and has none is named here, with the option that fixes it.
    """
    from coin.data.answers import answer_problems, answer_source
    from coin.tasks.protocol_sets import needs_ten_answers, resolve, with_backbone

    lines: list[str] = []
    problems: list[str] = []
    root = Path(cfg.data.root or ".").expanduser()
    for t in order:
        cols = resolve(t, with_backbone(cfg.eval.protocol, BACKBONES.get(cfg.model.name).protocols))
        names = cols["paper"].name + ("" if cols["strict"] is cols["paper"] else f", strict {cols['strict'].name}")
        source = answer_source(root, cfg.data.answers, t) if cfg.data.benchmark == "coin" else None
        where = ""
        if source is not None:  # its join is checked by coin data check and the run; here: is it there
            where = f"; answers joined from {source}" + ("" if source.is_file() else "  (MISSING)")
            if not source.is_file():
                problems.append(f"{source} (data.answers.{t})")
                if answers_missing is not None:
                    answers_missing[t] = source
        lines.append(f"  {t:<10} paper {names} ({cols['paper'].rule}){where}")
        test = files.get((t, "test"))
        if source is not None or test is None or not test.is_file():
            continue  # CoIN-Synth writes its ten answers; a missing test file is listed already
        found, _ = answer_problems(t, _records(test), None, str(test), needs_ten_answers(t, cfg.eval.protocol))
        problems += found
    return lines, problems


def _records(path: Path) -> list[dict] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else None


def per_task_lines(cfg: RunConfig, order: list[str], world: int) -> list[str]:
    """The tasks trained with their own batch, grad_accum, epochs or lr (``train.per_task``), one line each."""
    lines = []
    for t in order:
        own = cfg.train.for_task(t)
        if own is cfg.train:
            continue
        lines.append(f"  {t:<10} {own.batch_size * own.grad_accum * world} = {own.batch_size} x grad_accum "
                     f"{own.grad_accum} x {world} process(es); lr {own.lr:g}; {own.epochs:g} epoch(s)")
    return ["", "per-task training (train.per_task; the steps above use it):", *lines] if lines else []


def strategy_lines(cfg: RunConfig, world: int) -> list[str]:
    """How the processes share the model (``dist.strategy``), whether the method runs so, and the per-GPU
    memory estimate under DDP and FSDP (``coin.engine.memory``)."""
    from coin.engine.fsdp import refusal
    from coin.engine.memory import plan_lines
    from coin.methods import METHODS

    line = f"dist.strategy: {cfg.dist.strategy}"
    if cfg.dist.strategy == "fsdp":
        why = refusal(METHODS.get(cfg.method), cfg.method)
        line += (" (frozen base sharded, adapter replicated" + ("; one process: nothing to shard)" if world == 1 else ")")
                 + (f"; REFUSED: {why}" if why else ""))
    return [line, *plan_lines(cfg, world)]


def image_mode_line(cfg: RunConfig, order: list[str]) -> str:
    """The dry run's line for the test images (``eval.image_mode``, ``coin.tasks.image_modes``): which tasks'
    images are padded and which centre-cropped, or that the backbone's own processor prepares them."""
    mode = cfg.eval.image_mode
    if not BACKBONES.get(cfg.model.name).image_modes:
        return (f"test images (eval.image_mode {mode}): prepared by {cfg.model.name}'s own processor "
                "(the mode applies to the LLaVA backbones)")
    by_step: dict[str, list[str]] = {}
    for t in order:
        by_step.setdefault(eval_image_step(t, mode), []).append(t)
    words = {"pad": "padded to a square", "crop": "centre-cropped"}
    return f"test images (eval.image_mode {mode}): " + "; ".join(
        f"{words[step]}: {', '.join(tasks)}" for step, tasks in by_step.items())


def describe(cfg: RunConfig, out: Path) -> tuple[str, list[str]]:
    """The plan as text, and the list of missing files."""
    order = resolve_order(cfg.tasks.order)
    world = int(os.environ.get("WORLD_SIZE", 1))
    eff = cfg.train.batch_size * cfg.train.grad_accum * world
    a = cfg.adapter
    adapter = adapter_line(cfg.to_dict()["adapter"])
    model = BACKBONES.get(cfg.model.name).summary(cfg.model)
    tr = cfg.train
    betas = ", ".join(f"{b:g}" for b in tr.adam_betas)
    lines = [f"run folder: {out}", f"model: {model}", f"method: {cfg.method} {cfg.method_options or ''}".rstrip(),
             f"adapter: {adapter}; projector trained: {a.train_projector}",
             f"effective batch: {eff} = {cfg.train.batch_size} x grad_accum {cfg.train.grad_accum} x {world} process(es)"
             + ("" if world > 1 else " (accelerate launch multiplies it by its number of processes)")
             + (f"; {len(tr.per_task)} task(s) set their own (train.per_task, below)" if tr.per_task else ""),
             f"schedule: lr {tr.lr:g}, {tr.schedule} ({SCHEDULES[tr.schedule].summary}), warm-up "
             f"{tr.warmup_ratio:.0%}, {tr.epochs:g} epoch(s), {tr.precision}",
             f"optimizer: AdamW, weight decay {tr.weight_decay:g}, betas ({betas}), eps {tr.adam_eps:g}",
             f"instructions: {cfg.data.instructions}; volume {cfg.data.volume:g}", ""]
    missing: list[str] = []
    if cfg.data.benchmark == "synth":
        s = cfg.data.synth
        lines.append(f"data: CoIN-Synth (seed {s.seed}), generated into the cache on first use")
        counts = {t: (s.n_train, s.n_test) for t in order}
        files = {}
    else:
        root = Path(cfg.data.root or ".").expanduser()
        image_root = Path(cfg.data.image_root).expanduser() if cfg.data.image_root else root
        lines.append(f"data root: {root}{'' if root.is_dir() else '  (MISSING)'}")
        lines.append(f"image root: {image_root}{'' if image_root.is_dir() else '  (MISSING)'}")
        if not root.is_dir():
            missing.append(str(root))
        if not image_root.is_dir() and image_root != root:
            missing.append(str(image_root))
        counts, files, derived, sources, heads = {}, {}, {}, {}, {}
        for t in order:
            n = []
            for split in ("train", "test"):
                src = sources[(t, split)] = _task_file(root, cfg, t, split)
                p, derived[(t, split)] = src.path, src.derive
                files[(t, split)] = p
                rows = _rows(p) if p.is_file() else None
                if not p.is_file():
                    missing.append(str(p) + src.origin[len("MISSING"):])
                n.append(None if rows is None else len(rows))
                named = image_heads(rows)
                if named is not None:
                    heads[t] = heads.get(t, set()) | named
            counts[t] = tuple(n)
        lines += ["", f"data sources (instructions {cfg.data.instructions}; file set {cfg.data.file_set}):"]
        lines += [f"  {t:<10} " + "; ".join(f"{sp} {sources[(t, sp)].describe(root)}" for sp in ("train", "test"))
                  for t in order]
    lines.append("")
    lines.append(f"{'stage':<6}{'task':<11}{'train':>8}{'steps':>7}{'test':>7}  files")
    for j, t in enumerate(order, 1):
        n_train, n_test = counts[t]
        if n_train is not None:
            n_train = max(1, round(n_train * cfg.data.volume))
        own = cfg.train.for_task(t)  # train.per_task: the task's own batch, grad_accum, epochs
        steps = math.ceil(n_train * own.epochs / (own.batch_size * own.grad_accum * world)) if n_train else None
        where = ""
        if files:
            where = "  ".join(f"{files[(t, sp)]}{'' if files[(t, sp)].is_file() else ' (MISSING)'}"
                              f"{f' (-> {derived[(t, sp)]})' if derived[(t, sp)] else ''}" for sp in ("train", "test"))
        fmt = lambda v: "?" if v is None else str(v)  # noqa: E731
        lines.append(f"{j:<6}{t:<11}{fmt(n_train):>8}{fmt(steps):>7}{fmt(n_test):>7}  {where}")
    lines += per_task_lines(cfg, order, world)
    evals = "the tasks seen so far" if cfg.tasks.eval == "seen" else "every task"
    lines.append(f"\nafter each stage: evaluate {evals}" + ("; zero-shot row first" if cfg.eval.zero_shot else ""))
    lines.append(limit_line(order, cfg.eval.max_new_tokens))
    lines.append(image_mode_line(cfg, order))
    answers_missing: dict = {}
    score_lines, score_missing = scoring_plan(cfg, order, files, answers_missing)
    lines += ["", "scoring (reports lead with paper; strict beside it):"] + score_lines
    missing += score_missing
    fetch: list[str] = []
    if files:  # a benchmark read from data.root: the commands that fetch what is missing
        fetch, image_missing = fetch_lines(cfg, root, image_root, sources, heads, answers_missing)
        missing += image_missing
    lines += ["", *strategy_lines(cfg, world)]
    unmet = requirements.unmet()
    lines.append("packages: " + ("coin's requirements are met" if not unmet else "; ".join(unmet)
                                 + f" (install: {requirements.install_line()})"))
    missing += [f"package: {line}" for line in unmet]
    weight_fetch: list[str] = []
    model_lines, model_missing = model_files(cfg.model, weight_fetch)
    if model_lines:
        lines += ["", "model files:"] + model_lines
    missing += model_missing
    if missing:
        lines.append(f"\nMISSING ({len(missing)}):\n  " + "\n  ".join(missing))
    if fetch:
        lines.append("\nto fetch (the commands of the benchmark's table of sources, coin.benchmarks):\n"
                     + "\n".join(fetch))
    if weight_fetch:
        lines.append("\nto fetch the weights (each backbone's sources, coin.models.<family>.backbone):\n"
                     + "\n".join(weight_fetch))
    return "\n".join(lines), missing
