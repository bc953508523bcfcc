"""Batched greedy evaluation: sorted by length, sharded across processes, resumable.

Prompts are sorted by length so batches carry little padding; answers are keyed by
question id, so the order never matters (a test checks batch answers equal batch-size-1
answers). Each process appends its answers, batch by batch, to its own
``<task>.rank<r>.partial.jsonl``; a restart skips the ids already answered in any shard file,
so an evaluation killed under one process count resumes under another (2 -> 1 or 1 -> 2)
without answering a question twice. At the end every shard file is merged into one
``<task>.jsonl``, checked for missing and duplicate ids, and removed.

Every answer is scored under both protocol columns (``coin.tasks.protocol_sets``): a row keeps
``score``/``tag``/``parsed`` of ``paper`` (what older readers read) and ``scores``/``tags``
by column. Stored outputs are rescored on resume, so a folder written before a scoring
change ends with the numbers today's rules give (``rescore_stage``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

from coin.data.coin_json import eval_samples
from coin.data.sample import TestItem, as_item
from coin.engine.dist import barrier, rank as _rank, world as _world
from coin.engine.eval_dtype import in_base_dtype
from coin.tasks.knowledge import knowledge_share, score_knowledge
from coin.tasks.protocol_sets import resolve, score_protocols
from coin.scoring.scorers import TaskScore, format_error_share
from coin.benchmarks.mllm_cl.submission import is_unscored, submission_rows
from coin.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from coin.models.backbone import VLM, SharesPrefix
from coin.tasks import get_task


def _read_partial(path: Path, repair: bool = True) -> dict[str, str]:
    """Answers already written; a torn last line (a kill mid-write) is ignored, and cut off the
    file when ``repair`` (only the process that appends to the file repairs it)."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if repair and len(keep) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    done = {}
    for line in keep.decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            done[row["question_id"]] = row["output"]
    return done


def _shard_files(pred_dir: Path, task: str) -> list[Path]:
    """Every ``<task>.rank<r>.partial.jsonl`` in ``pred_dir``, by rank: those of this launch and of
    any earlier launch with another process count."""
    if not pred_dir.is_dir():
        return []
    prefix, suffix = f"{task}.rank", ".partial.jsonl"
    found = []
    for p in pred_dir.iterdir():
        middle = p.name[len(prefix): -len(suffix)] if p.name.startswith(prefix) and p.name.endswith(suffix) else ""
        if middle.isdigit():
            found.append((int(middle), p))
    return [p for _, p in sorted(found)]


def _by_image(ordered: list) -> list:
    """``ordered`` with each image's questions brought together (at its shortest question's place, in
    length order), so a batch holds whole groups whose image prefix is prefilled once
    (``share_prefix``). With one question per image it is ``ordered`` itself; a text-only question
    (no image, no prefix to share) stays in its own place."""
    groups: dict = {}
    for s in ordered:
        groups.setdefault(("text", s.id) if s.image is None else s.image, []).append(s)
    return [s for group in groups.values() for s in group]


def generate_answers(vlm: VLM, records: list[TestItem], max_new_tokens: int, batch_size: int, progress: bool = True,
                     desc: str = "eval", partial: Path | None = None) -> dict[str, str]:
    """Raw model outputs for ``records`` (test items, or plain JSON records) as ``{question_id: output}``;
    resumable through ``partial``."""
    from tqdm.auto import tqdm

    done = _read_partial(partial) if partial is not None else {}
    samples = eval_samples([as_item(r) for r in records])
    encoded = vlm.tokenizer([s.prompt for s in samples], add_special_tokens=False)["input_ids"] if samples else []
    lengths = {s.id: len(ids) for s, ids in zip(samples, encoded)}
    ordered = sorted(samples, key=lambda s: (lengths[s.id], s.id))
    if isinstance(vlm, SharesPrefix) and vlm.share_prefix:
        ordered = _by_image(ordered)
    # batches are fixed before skipping what is done, so a resumed evaluation feeds the model
    # exactly the batches (hence the padding, hence the numbers) of an uninterrupted one
    chunks = [ordered[k : k + batch_size] for k in range(0, len(ordered), batch_size)]
    chunks = [c for c in chunks if not all(s.id in done for s in c)]
    out = dict(done)
    sink = None
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        sink = open(partial, "a", encoding="utf-8")
    # a VLM that can prepare a batch's images ahead (LlavaVLM.prefetch) does so in a thread while the
    # model answers the batch before: image decoding and preprocessing leave the critical path
    prefetch = getattr(vlm, "prefetch", None) if len(chunks) > 1 else None
    pool = ThreadPoolExecutor(1, thread_name_prefix="coin-prefetch") if prefetch is not None else None
    ahead = pool.submit(prefetch, chunks[0]) if pool is not None else None
    try:
        for k, chunk in enumerate(tqdm(chunks, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True,
                                       leave=False)):
            if ahead is not None:
                ahead.result()  # a bad image is raised here, named, as if this batch had read it
                ahead = pool.submit(prefetch, chunks[k + 1]) if k + 1 < len(chunks) else None
            with in_base_dtype(getattr(vlm, "model", None)):  # a bf16 base: the fp32 adapter computes in bf16
                answers = vlm.generate(chunk, max_new_tokens)
            for s, text in zip(chunk, answers):
                out[s.id] = text
            if sink is not None:
                sink.write("".join(json.dumps({"question_id": s.id, "output": t}, ensure_ascii=False) + "\n"
                                   for s, t in zip(chunk, answers)))
                sink.flush()
                os.fsync(sink.fileno())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if sink is not None:
            sink.close()
    return out


def score_rows(task: str, outputs: dict, records: list[TestItem], protocol: dict | None = None,
               spaces: Mapping[str, frozenset[str]] | None = None) -> tuple[dict[str, TaskScore], list[dict]]:
    """Scores by protocol column and the prediction rows to store (``score`` = paper, ``scores`` by column).

    With ``spaces`` (every task's answer space, ``coin.tasks.knowledge.answer_spaces``) a
    ``knowledge`` column is added: each answer scored by its content, whatever its format.
    """
    results = score_protocols(task, outputs, records, protocol)
    if spaces is not None:
        known = score_knowledge(task, get_task(task).answer_form, outputs, records, results["paper"], spaces)
        if known is not None:
            results["knowledge"] = known
    rows = [{"task": task, **s, "scores": {c: r.samples[k]["score"] for c, r in results.items()},
             "tags": {c: r.samples[k]["tag"] for c, r in results.items()}}
            for k, s in enumerate(results["paper"].samples)]
    return results, rows


def task_entry(task: str, results: dict[str, TaskScore], protocol: dict | None = None) -> dict:
    """A task's ``scores.json`` entry: the paper protocol's fields at the top, every column under ``protocols``."""
    names = {c: p.name for c, p in resolve(task, protocol).items()}
    paper = results["paper"]
    share = {c: knowledge_share if c == "knowledge" else format_error_share for c in results}
    return {"score": paper.score, "n": paper.n, "tags": dict(paper.tags), "format_share": format_error_share(paper.tags),
            "protocols": {c: {"protocol": names.get(c, c), "score": r.score, "tags": dict(r.tags),
                              "format_share": share[c](r.tags)} for c, r in results.items()}}


def _rescore(final: Path, task: str, records: list[TestItem], protocol: dict | None, write: bool,
             spaces: Mapping[str, frozenset[str]] | None = None) -> dict[str, TaskScore]:
    """Rescore stored outputs; the file is rewritten (atomically) only when its rows change."""
    old = read_jsonl(final)
    results, rows = score_rows(task, {r["question_id"]: r["output"] for r in old}, records, protocol, spaces)
    extra = {str(r["question_id"]): r for r in old}  # keys another writer added to a row are kept
    rows = [{**extra.get(str(r["question_id"]), {}), **r} for r in rows]
    if write and rows != old:
        atomic_write_jsonl(final, rows)
    return results


def rescore_stage(stage_dir: Path, tests: dict[str, list[TestItem]], protocol: dict | None = None,
                  spaces: Mapping[str, frozenset[str]] | None = None) -> dict | None:
    """Rescore a finished stage's predictions under today's protocols; update ``scores.json`` if it changed.

    Only the score fields of each task's entry are replaced (other keys are kept). Returns
    the stage's scores, or None when the folder has no ``scores.json``.
    """
    path = stage_dir / "scores.json"
    if not path.is_file():
        return None
    old = read_json(path)
    new = {}
    for task, entry in old.items():
        final = stage_dir / "predictions" / f"{task}.jsonl"
        if task not in tests or not final.is_file():
            new[task] = entry
            continue
        results = _rescore(final, task, tests[task], protocol, write=True, spaces=spaces)
        new[task] = {**entry, **task_entry(task, results, protocol)}
    if new != old:
        atomic_write_json(path, new)
    return new


def _write_submission(pred_dir: Path, task: str, protocol: dict | None, rows) -> None:
    """A task without public answers (``coin.benchmarks.mllm_cl.submission``): ``<task>.submission.json``, the file to send."""
    path = pred_dir / f"{task}.submission.json"
    if is_unscored(resolve(task, protocol)["paper"]) and not path.is_file():
        atomic_write_json(path, submission_rows(rows()))


def evaluate_task(vlm: VLM, task: str, records: list[TestItem], max_new_tokens: int, batch_size: int,
                  pred_dir: Path, progress: bool = True, protocol: dict | None = None,
                  spaces: Mapping[str, frozenset[str]] | None = None) -> dict[str, TaskScore] | None:
    """Evaluate one task into ``pred_dir/<task>.jsonl`` (resumable, sharded); rank 0 returns its scores.

    The scores are by protocol column (``paper``, ``strict``); ``protocol`` is the run's
    ``eval.protocol`` choice. ``records`` are test items (plain JSON records are read as ones).
    """
    records = [as_item(r) for r in records]
    final = pred_dir / f"{task}.jsonl"
    if final.is_file():  # finished earlier (or reused from identical weights): rescore from the stored outputs
        result = _rescore(final, task, records, protocol, write=_rank() == 0, spaces=spaces)
        if _rank() == 0:
            _write_submission(pred_dir, task, protocol, lambda: read_jsonl(final))
        return result
    rank, world = _rank(), _world()
    own = pred_dir / f"{task}.rank{rank}.partial.jsonl"
    # answers in other shard files (another rank, or an earlier launch with another process
    # count) are not asked again; read before the barrier, while no process writes its file yet
    elsewhere = set()
    for path in _shard_files(pred_dir, task):
        if path != own:
            elsewhere.update(_read_partial(path, repair=False))
    shard = [r for r in records[rank::world] if r.question_id not in elsewhere]
    barrier()
    generate_answers(vlm, shard, max_new_tokens, batch_size, progress, desc=f"eval {task}", partial=own)
    barrier()
    if rank != 0:
        barrier()
        return None
    outputs: dict[str, str] = {}
    shards = _shard_files(pred_dir, task)
    for path in shards:
        part = _read_partial(path, repair=False)
        dup = set(part) & set(outputs)
        if dup:
            raise RuntimeError(f"{pred_dir}: question ids answered by two shards: {sorted(dup)[:5]}")
        outputs.update(part)
    missing = [r.question_id for r in records if r.question_id not in outputs]
    if missing:
        raise RuntimeError(f"{pred_dir}: {len(missing)} question ids have no answer after merging, e.g. {missing[:5]}")
    result, rows = score_rows(task, outputs, records, protocol, spaces)
    atomic_write_jsonl(final, rows)
    _write_submission(pred_dir, task, protocol, lambda: rows)
    for path in shards:
        path.unlink(missing_ok=True)
    barrier()
    return result
