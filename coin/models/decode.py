"""Greedy decoding for a batch, with finished rows dropped as it goes.

``model.generate`` keeps every row of a batch until the last one ends: a row that stopped
after two tokens is still run through the model (and its KV cache still read) for every
step the longest answer takes. With short VQA answers and the odd long one, most of a
batch's decode work is then spent on rows that are already done.

``greedy_decode`` runs the same greedy steps (prefill, then one token at a time with the KV
cache, positions from the attention mask as ``generate`` computes them for left-padded
prompts) and, once at least ``compact_at`` of the rows still in the batch have ended,
removes them: from the KV cache, the attention mask and the positions. Rows never interact,
so every row's tokens are what ``generate`` gives (tested against it).

It needs 1-D positions (Llama-style rotary or learned positions), so ``LlavaVLM`` uses it;
models with their own position bookkeeping across steps (Qwen2-VL's M-RoPE keeps per-row
offsets inside the model) stay on ``generate``.
"""

from __future__ import annotations

import torch

from coin.models.kv_cache import preallocated_cache


@torch.inference_mode()
def greedy_decode(model, batch: dict[str, torch.Tensor], max_new_tokens: int, eos_ids: list[int],
                  compact_at: float = 0.25) -> list[list[int]]:
    """Each row's new tokens up to and including its first end token (at most ``max_new_tokens``).

    ``batch`` holds left-padded ``input_ids`` and ``attention_mask`` plus whatever else the
    model's first forward takes (``pixel_values``).
    """
    if max_new_tokens < 1:
        return [[] for _ in range(batch["input_ids"].shape[0])]
    mask = batch["attention_mask"]
    width = batch["input_ids"].shape[1]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache = preallocated_cache(model, width + max_new_tokens)
    if cache is None:
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=model.config)
    out = model(**batch, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)  # which original row each live row is
    tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
    position = positions[:, -1:]
    finished = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1, :].argmax(dim=-1)
        for r, t in zip(rows.tolist(), nxt.tolist()):
            tokens[r].append(t)  # a row kept after its end (below the threshold) runs on; _until_end cuts it
        finished |= torch.isin(nxt, eos)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        if finished.float().mean().item() >= compact_at:
            keep = (~finished).nonzero().squeeze(1)
            for layer in cache.layers:
                layer.batch_select_indices(keep)
            rows, nxt, mask, position, finished = rows[keep], nxt[keep], mask[keep], position[keep], finished[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        position = position + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, past_key_values=cache,
                    use_cache=True)
    return [_until_end(t, eos_ids) for t in tokens]


def _until_end(tokens: list[int], eos_ids: list[int]) -> list[int]:
    for k, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: k + 1]
    return tokens
