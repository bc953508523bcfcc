"""Batched greedy evaluation: sorted by length, sharded across processes, resumable.

Prompts are sorted by length so batches carry little padding; answers are keyed by
question id, so the order never matters (a test checks batch answers equal batch-size-1
answers). Each process appends its answers, batch by batch, to its own
``<task>.rank<r>.partial.jsonl``; a restart skips the ids already there. At the end the
shards are merged into one ``<task>.jsonl``, checked for missing and duplicate ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from coin.data.coin_json import eval_samples
from coin.engine.dist import barrier, rank as _rank, world as _world
from coin.eval.scorers import TaskScore, score_task
from coin.io import atomic_write_jsonl, read_jsonl


def _read_partial(path: Path) -> dict[str, str]:
    """Answers already written; a torn last line (a kill mid-write) is cut off the file."""
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]
    if len(keep) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    done = {}
    for line in keep.decode("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            done[row["question_id"]] = row["output"]
    return done


def generate_answers(vlm, records: list[dict], max_new_tokens: int, batch_size: int, progress: bool = True,
                     desc: str = "eval", partial: Path | None = None) -> dict[str, str]:
    """Raw model outputs for ``records`` as ``{question_id: output}``; resumable through ``partial``."""
    from tqdm.auto import tqdm

    done = _read_partial(partial) if partial is not None else {}
    samples = eval_samples(records)
    encoded = vlm.tokenizer([s.prompt for s in samples], add_special_tokens=False)["input_ids"] if samples else []
    lengths = {s.id: len(ids) for s, ids in zip(samples, encoded)}
    ordered = sorted(samples, key=lambda s: (lengths[s.id], s.id))
    # batches are fixed before skipping what is done, so a resumed evaluation feeds the model
    # exactly the batches (hence the padding, hence the numbers) of an uninterrupted one
    chunks = [ordered[k : k + batch_size] for k in range(0, len(ordered), batch_size)]
    chunks = [c for c in chunks if not all(s.id in done for s in c)]
    out = dict(done)
    sink = None
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
        sink = open(partial, "a", encoding="utf-8")
    try:
        for chunk in tqdm(chunks, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True, leave=False):
            answers = vlm.generate(chunk, max_new_tokens)
            for s, text in zip(chunk, answers):
                out[s.id] = text
            if sink is not None:
                sink.write("".join(json.dumps({"question_id": s.id, "output": t}, ensure_ascii=False) + "\n"
                                   for s, t in zip(chunk, answers)))
                sink.flush()
                os.fsync(sink.fileno())
    finally:
        if sink is not None:
            sink.close()
    return out


def evaluate_task(vlm, task: str, scorer: str, records: list[dict], max_new_tokens: int, batch_size: int,
                  pred_dir: Path, progress: bool = True) -> TaskScore | None:
    """Evaluate one task into ``pred_dir/<task>.jsonl`` (resumable, sharded); rank 0 returns the score."""
    final = pred_dir / f"{task}.jsonl"
    if final.is_file():  # finished earlier: rescore from the stored outputs
        rows = read_jsonl(final)
        return score_task(scorer, {r["question_id"]: r["output"] for r in rows}, records)
    rank, world = _rank(), _world()
    shard = records[rank::world]
    generate_answers(vlm, shard, max_new_tokens, batch_size, progress, desc=f"eval {task}",
                     partial=pred_dir / f"{task}.rank{rank}.partial.jsonl")
    barrier()
    if rank != 0:
        barrier()
        return None
    outputs: dict[str, str] = {}
    for r in range(world):
        part = _read_partial(pred_dir / f"{task}.rank{r}.partial.jsonl")
        dup = set(part) & set(outputs)
        if dup:
            raise RuntimeError(f"{pred_dir}: question ids answered by two shards: {sorted(dup)[:5]}")
        outputs.update(part)
    missing = [r["question_id"] for r in records if r["question_id"] not in outputs]
    if missing:
        raise RuntimeError(f"{pred_dir}: {len(missing)} question ids have no answer after merging, e.g. {missing[:5]}")
    result = score_task(scorer, outputs, records)
    atomic_write_jsonl(final, [{"task": task, **s} for s in result.samples])
    for r in range(world):
        (pred_dir / f"{task}.rank{r}.partial.jsonl").unlink(missing_ok=True)
    barrier()
    return result
