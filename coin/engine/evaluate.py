"""Batched greedy evaluation of one task's test set.

Prompts are sorted by length so batches carry little padding; answers are keyed by
question id, so the order never matters (a test checks batch answers equal batch-size-1
answers).
"""

from __future__ import annotations

from coin.data.coin_json import eval_samples


def generate_answers(vlm, records: list[dict], max_new_tokens: int, batch_size: int, progress: bool = True,
                     desc: str = "eval") -> dict[str, str]:
    """Raw model outputs for ``records``, as ``{question_id: output}``."""
    from tqdm.auto import tqdm

    samples = eval_samples(records)
    lengths = {s.id: len(vlm.tokenizer(s.prompt, add_special_tokens=False)["input_ids"]) for s in samples}
    ordered = sorted(samples, key=lambda s: (lengths[s.id], s.id))
    out: dict[str, str] = {}
    chunks = [ordered[k : k + batch_size] for k in range(0, len(ordered), batch_size)]
    for chunk in tqdm(chunks, desc=desc, unit="batch", disable=not progress, dynamic_ncols=True, leave=False):
        for s, text in zip(chunk, vlm.generate(chunk, max_new_tokens)):
            out[s.id] = text
    return out
