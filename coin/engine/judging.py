"""``judge_run``: grade every prediction of a run folder and write its Reasoning-Capability matrix.

For each finished stage (``stages/00-zeroshot``, ``stages/NN-<task>``, those with ``DONE``)
and each task's ``predictions/<task>.jsonl``, the CoIN prompt is built from the test
record and the model's output as ``judge.protocol`` sends it (``coin.scoring.judge.protocols``:
``coin`` by default, ``paper`` for the original as run), looked up in the judge cache, and
only the missing ones are sent to the judge. Results go to ``<run>/judge/<judge-name>/``::

    rc_matrix.json    the Reasoning-Capability matrix (task score = sum / (10 N) * 100; an integer
                      under the paper protocol),
                      zero-shot row, MAA/BWT/... via coin.metrics, per-cell counts, and
                      agreement with truth alignment per task
    samples.jsonl     one row per answer: output, judge reply, judge score, status, TA score
    config.json       the judge config (it names the key's variable, never the key)

and ``<run>/judge/agreement.json`` holds the agreement between every two judges run on
this folder. N counts every test sample, so unparsable replies and missing predictions
score 0, as in the paper; a cell with a failed request (or, outside the selected
stages/tasks, an answer not in the cache yet) is left empty rather than averaged over
fewer samples, and the next ``coin judge`` asks only for what is missing.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from coin import metrics
from coin.data.sample import TestItem
from coin.errors import JudgeError
from coin.scoring.judge.agreement import agreement, truth_agreement
from coin.scoring.judge.backends import JudgeBackend, build_backend, cache_id
from coin.scoring.judge.cache import CacheKey, JudgeCache
from coin.scoring.judge.settings import JudgeConfig
from coin.scoring.judge.parse import OK, STATUSES
from coin.scoring.judge.prompt import prompt_sha
from coin.scoring.judge.protocols import JudgeProtocol, get_protocol
from coin.scoring.judge.redact import redact, secrets_of
from coin.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from coin.tasks import get_task

__all__ = ["judge_run", "write_agreement", "select_stages", "JudgeError", "COUNT_KEYS"]

# missing: no prediction for the sample; failed: the request failed after its retries;
# pending: outside the selected stages/tasks and not in the cache yet.
COUNT_KEYS = STATUSES + ("missing", "failed", "pending")
ZERO_SHOT = "00-zeroshot"


@dataclass
class _Item:
    """One prediction to grade (or already graded)."""

    stage: str
    task: str
    question_id: str
    output: str | None
    key: CacheKey | None  # None when there is no output to grade
    ta_score: float | None
    ta_tag: str | None


def _stage_dirs(run_dir: Path, order: list[str]) -> list[tuple[str, int | None]]:
    """Finished stages as (folder name, matrix row); row None is the zero-shot stage."""
    names = [(ZERO_SHOT, None)] + [(f"{j + 1:02d}-{t}", j) for j, t in enumerate(order)]
    return [(n, j) for n, j in names if (run_dir / "stages" / n / "DONE").is_file()]


def select_stages(available: Sequence[str], wanted: Sequence[str | int] | None) -> set[str]:
    """Stage folders named by ``wanted``: 0 or "zeroshot" (zero-shot), k or "k" (stage k), a task
    name (the stage that trained it) or a folder name; None selects every available stage."""
    if wanted is None:
        return set(available)
    out = set()
    for w in wanted:
        s = str(w)
        hits = [a for a in available if s == a or (s.isdigit() and int(a[:2]) == int(s)) or a[3:] == s
                or (s in ("zeroshot", "zero-shot") and a == ZERO_SHOT)]
        if not hits:
            raise JudgeError(f"no finished stage {s!r} in this run; stages: {', '.join(available) or 'none'}")
        out.update(hits)
    return out


def _test_records(run_dir: Path, order: list[str], trust_plugins: bool = False) -> dict[str, dict[str, TestItem]]:
    """The run's test records by task and question id, loaded as the run loaded them.

    Needed because prediction rows hold the output but not the question or the truth.
    Going through ``load_benchmark`` with the run's own ``config.yaml`` gives exactly
    the records the run evaluated (instruction family, per-task paths, seeds).
    """
    from coin.config import read_yaml_mapping
    from coin.config_load import load_config, trusted_plugins
    from coin.benchmarks.load import load_benchmark

    # the folder's plugins run only when the user asked (--trust-plugins): opening a run runs none of its code
    trusted_plugins(read_yaml_mapping(run_dir / "config.yaml", "run folder config"), run_dir / "config.yaml",
                    trust_plugins)
    cfg = load_config(run_dir / "config.yaml")
    test = load_benchmark(cfg.data, order, cfg.seed).test
    return {task: {r.question_id: r for r in test[task]} for task in order}


def _collect(run_dir: Path, order: list[str], stages: list[tuple[str, int | None]], cfg: JudgeConfig,
             selected: set[tuple[str, str]], trust_plugins: bool = False) -> tuple[list[_Item], dict[CacheKey, list]]:
    """Every prediction as an ``_Item``, and the prompts of the selected ones by cache key."""
    items: list[_Item] = []
    prompts: dict[CacheKey, list] = {}
    records: dict[str, dict[str, TestItem]] | None = None
    judge, protocol = cache_id(cfg), get_protocol(cfg.protocol)
    for stage, _ in stages:
        for task in order:
            path = run_dir / "stages" / stage / "predictions" / f"{task}.jsonl"
            if not path.is_file():
                continue
            grounding = get_task(task).answer_form == "box"
            for row in read_jsonl(path):
                qid = str(row["question_id"])
                ta, output = row.get("score"), row.get("output")
                item = _Item(stage, task, qid, None if output is None else str(output), None,
                             None if ta is None else float(ta), row.get("tag"))
                items.append(item)
                if output is None:
                    continue
                record = TestItem.from_row(row)  # a row that carries its question and truth needs no test file
                if not all(k in row for k in (("text", "answer", "answer_bbox") if grounding else ("text", "answer"))):
                    if records is None:
                        records = _test_records(run_dir, order, trust_plugins)
                    record = records[task].get(qid)
                    if record is None:
                        raise JudgeError(f"{path}: question_id {qid!r} matches no test record of {task}")
                messages = protocol.messages(record, str(output), grounding, cfg.prompt_version)
                item.key = (judge, cfg.prompt_version, prompt_sha(messages), protocol.reply_tokens(cfg.max_tokens))
                if (stage, task) in selected:
                    prompts.setdefault(item.key, messages)
    return items, prompts


def _ask(backend_factory: Callable[[], JudgeBackend], prompts: dict[CacheKey, list], cache: JudgeCache,
         progress: bool, secrets: Sequence[str] = ()) -> dict[CacheKey, str]:
    """Send ``prompts`` to the judge, caching each reply as it arrives; returns the failures' errors.

    Every error kept (in the returned map, hence ``samples.jsonl`` and the log) or raised goes through
    ``redact`` with ``secrets`` (the judge's API key), whichever backend produced it: an endpoint that
    echoes the key in its 401 leaves it in no file and no message.
    """
    failures: dict[CacheKey, str] = {}
    if not prompts:
        return failures
    keys, msgs = list(prompts), list(prompts.values())
    bar = None
    try:
        backend = backend_factory()
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(keys), desc="judge", unit="answer")
        try:
            for i, reply in backend.ask(msgs):
                if reply.text is not None:
                    text = reply.text
                    cache.put(keys[i], redact(text, secrets) if any(s and s in text for s in secrets) else text)
                else:
                    failures[keys[i]] = redact(reply.error or "no reply", secrets)
                if bar is not None:
                    bar.update(1)
        finally:
            backend.close()
    except Exception as e:  # raised to the CLI: its message must not carry the key either
        clean = redact(str(e), secrets)
        if clean == str(e):
            raise
        raise JudgeError(f"the judge failed: {type(e).__name__}: {clean}") from None
    finally:
        if bar is not None:
            bar.close()
    return failures


def _cell(counts: Counter, total: float, n: int, protocol: JudgeProtocol) -> float | None:
    """The task score of one cell (the protocol's: sum / (10 N) x 100, rounded under ``paper``), or None
    while any of its answers lacks a judge reply."""
    if n == 0 or counts["failed"] or counts["pending"]:
        return None
    return protocol.task_score(total, n)


def _grade(items: list[_Item], replies: dict[CacheKey, str], failures: dict[CacheKey, str], protocol: JudgeProtocol
           ) -> tuple[list[dict], dict[tuple[str, str], tuple[Counter, float, int]]]:
    """Per-answer rows (for ``samples.jsonl``) and per-cell (status counts, score sum, N), replies read
    by the protocol's parser."""
    rows: list[dict] = []
    cells: dict[tuple[str, str], tuple[Counter, float, int]] = {}
    for it in items:
        reply, score = None, None
        if it.key is None:
            status = "missing"
        elif it.key in replies:
            reply = replies[it.key]
            parsed = protocol.parse(reply)
            status, score = parsed.status, parsed.score
        elif it.key in failures:
            status = "failed"
        else:
            status = "pending"
        counts, total, n = cells.get((it.stage, it.task), (Counter(), 0.0, 0))
        counts[status] += 1
        cells[(it.stage, it.task)] = (counts, total + (score or 0.0), n + 1)
        rows.append({"stage": it.stage, "task": it.task, "question_id": it.question_id, "output": it.output,
                     "reply": reply, "judge_score": score, "status": status, "ta_score": it.ta_score,
                     "ta_tag": it.ta_tag, **({"error": failures[it.key]} if status == "failed" else {})})
    return rows, cells


def _matrices(order: list[str], stages: list[tuple[str, int | None]],
              cells: dict[tuple[str, str], tuple[Counter, float, int]], protocol: JudgeProtocol
              ) -> tuple[list, list | None, dict]:
    """The RC matrix, its zero-shot row (None without that stage) and the status counts of each cell."""
    T = len(order)
    matrix: list[list] = [[None] * T for _ in range(T)]
    counts: dict = {"matrix": [[None] * T for _ in range(T)], "zero_shot": None}
    zero: list | None = None
    for stage, j in stages:
        for i, task in enumerate(order):
            if (stage, task) not in cells:
                continue
            c, total, n = cells[(stage, task)]
            entry = {k: c[k] for k in COUNT_KEYS} | {"n": n}
            if j is None:
                zero = zero or [None] * T
                counts["zero_shot"] = counts["zero_shot"] or [None] * T
                zero[i], counts["zero_shot"][i] = _cell(c, total, n, protocol), entry
            else:
                matrix[j][i], counts["matrix"][j][i] = _cell(c, total, n, protocol), entry
    return matrix, zero, counts


def _summary(matrix: list, zero: list | None, method: str | None) -> dict:
    """MAA, BWT, ACC... of the RC matrix; for a final-row-only method (multi-task) only what the last
    row gives, exactly as the run's truth-alignment summary shows it."""
    from coin.methods import final_row_only, hide_row_metrics

    summary = metrics.summarize(matrix, zero_shot=zero)
    return hide_row_metrics(summary) if final_row_only(method) else summary


def judge_run(run_dir: str | os.PathLike, judge_cfg: JudgeConfig, stages: Sequence[str | int] | None = None,
              tasks: Sequence[str] | None = None, *, backend: Callable[[], JudgeBackend] | None = None,
              finish: Callable[[Path], object] | None = None, progress: bool = False,
              log: Callable[[str], None] = print,
              trust_plugins: bool = False) -> dict:
    """Grade the predictions of ``run_dir`` with the judge ``judge_cfg``; returns ``rc_matrix.json``.

    ``stages`` and ``tasks`` limit what is sent to the judge (default: everything); cells
    outside them are still filled from the cache when all their answers are there.
    ``backend`` builds the backend (default: from the config); it is only built when
    something is not cached, so a finished judge reruns offline. ``finish(run_dir)`` runs at the end
    (``coin.api.judge`` passes the report writer, so the run's report gains the judge sections). ``trust_plugins``: import the plugins the run's config
    names when its test records must be read (never without it: a run folder's code does not run).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "matrix.json").is_file():
        raise JudgeError(f"{run_dir}: no matrix.json (not a run folder, or its run has not finished)")
    run_matrix = read_json(run_dir / "matrix.json")
    order = list(run_matrix["tasks"])
    for t in tasks or ():
        if t not in order:
            raise JudgeError(f"task {t!r} is not in this run; tasks: {', '.join(order)}")
    stage_list = _stage_dirs(run_dir, order)
    chosen = select_stages([s for s, _ in stage_list], stages)
    selected = {(s, t) for s in chosen for t in (tasks or order)}

    items, prompts = _collect(run_dir, order, stage_list, judge_cfg, selected, trust_plugins)
    cache_path = Path(judge_cfg.cache) if judge_cfg.cache else run_dir / "judge" / "cache.sqlite"
    with JudgeCache(cache_path) as cache:
        cached = cache.get_many(k for k in (i.key for i in items) if k is not None)
        todo = {k: m for k, m in prompts.items() if k not in cached}
        log(f"judge {judge_cfg.folder_name}: {len(items)} answers, {len(prompts)} distinct prompts selected, "
            f"{len(prompts) - len(todo)} cached, {len(todo)} to ask")
        failures = _ask(backend or (lambda: build_backend(judge_cfg)), todo, cache, progress, secrets_of(judge_cfg))
        replies = cache.get_many(todo)
        if failures:  # already redacted
            log(f"judge {judge_cfg.folder_name}: {len(failures)} requests failed (asked again by the next coin "
                f"judge); first error: {next(iter(failures.values()))}")
    replies.update(cached)

    protocol = get_protocol(judge_cfg.protocol)
    rows, cells = _grade(items, replies, failures, protocol)
    matrix, zero, counts = _matrices(order, stage_list, cells, protocol)
    ta_by_task = {}
    for task in order + ["all"]:
        sub = [r for r in rows if r["status"] == OK and (task == "all" or r["task"] == task)]
        ta_by_task[task] = truth_agreement([r["judge_score"] for r in sub], [r["ta_score"] for r in sub])
    totals = Counter(r["status"] for r in rows)
    out_dir = run_dir / "judge" / judge_cfg.folder_name
    result = {
        "judge": {"name": judge_cfg.folder_name, "id": judge_cfg.judge_id, "cache_id": cache_id(judge_cfg),
                  "model": judge_cfg.model,
                  "backend": judge_cfg.backend, "prompt_version": judge_cfg.prompt_version,
                  "protocol": protocol.name, "sampling": dict(protocol.sampling),
                  "max_tokens": protocol.reply_tokens(judge_cfg.max_tokens)},
        "tasks": order, "matrix": matrix, "zero_shot": zero,
        "metrics": _summary(matrix, zero, run_matrix.get("method")),
        "counts": {**counts, "total": {k: totals[k] for k in COUNT_KEYS}},
        "truth_agreement": ta_by_task,
    }
    atomic_write_jsonl(out_dir / "samples.jsonl", rows)
    atomic_write_json(out_dir / "config.json", judge_cfg.public_dict())
    atomic_write_json(out_dir / "rc_matrix.json", result)
    write_agreement(run_dir)
    t = result["counts"]["total"]
    log(f"judge {judge_cfg.folder_name}: {t['ok']} scored, {t['unparsable']} unparsable, "
        f"{t['out_of_range']} out of range, {t['failed']} failed, {t['missing']} missing predictions, "
        f"{t['pending']} pending -> {out_dir / 'rc_matrix.json'}")
    if finish is not None:
        finish(run_dir)
    return result


def write_agreement(run_dir: str | os.PathLike) -> dict:
    """Agreement between every two judges with ``samples.jsonl`` in ``<run>/judge/``, per task and overall.

    Answers are matched by (stage, task, question id); only answers both judges scored count.
    """
    judge_dir = Path(run_dir) / "judge"
    names = sorted(p.parent.name for p in judge_dir.glob("*/samples.jsonl"))
    scores = {}
    for name in names:
        scores[name] = {(r["stage"], r["task"], r["question_id"]): r["judge_score"]
                        for r in read_jsonl(judge_dir / name / "samples.jsonl") if r["status"] == OK}
    pairs = []
    for a, b in itertools.combinations(names, 2):
        common = sorted(scores[a].keys() & scores[b].keys())
        by_task: dict[str, dict] = {}
        for task in sorted({k[1] for k in common}):
            ks = [k for k in common if k[1] == task]
            by_task[task] = agreement([scores[a][k] for k in ks], [scores[b][k] for k in ks])
        pairs.append({"a": a, "b": b, "all": agreement([scores[a][k] for k in common], [scores[b][k] for k in common]),
                      "tasks": by_task})
    result = {"judges": names, "pairs": pairs}
    if names:
        atomic_write_json(judge_dir / "agreement.json", result)
    return result
