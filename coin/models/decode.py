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

``shared_prefix_decode`` does the same for a batch in which several questions are on one
image: LLaVA-1.5's prompt is a system line and 576 image tokens before a question of a few
dozen, so prefilling that prefix once per image and copying its keys and values to each
question's row removes most of the prefill (GQA's test split has about 32 questions an image).

Both need 1-D positions (Llama-style rotary or learned positions), so ``LlavaVLM`` uses them;
models with their own position bookkeeping across steps (Qwen2-VL's M-RoPE keeps per-row
offsets inside the model, and its image tokens' positions are 3-D) stay on ``generate`` with
per-question prefill.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coin.models.kv_cache import cache_kwargs, preallocated_cache


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
    cache = _new_cache(model, width + max_new_tokens)
    out = model(**batch, position_ids=positions, **cache_kwargs(cache), use_cache=True, logits_to_keep=1)
    return _greedy_steps(model, out, cache, mask, positions[:, -1:], max_new_tokens, eos_ids, compact_at)


@dataclass(frozen=True)
class PrefixPlan:
    """How a batch shares prompt prefixes: ``prefixes[g]`` is group g's shared token prefix,
    ``group_of[i]`` row i's group and ``suffixes[i]`` row i's own tokens after that prefix (never
    empty: the last prompt token's logits give the first answer token)."""

    prefixes: list[list[int]]
    group_of: list[int]
    suffixes: list[list[int]]
    first_row: list[int]  # one row of each group (whose image, if any, the group's prefill reads)


def plan_shared_prefix(ids: list[list[int]], keys: list, forbidden: int | None = None) -> PrefixPlan | None:
    """Group rows by ``keys`` (the image) and split each row at its group's longest common prefix.

    A None key (a text-only question: no image prefix to share) is a group of its own. None when
    no two rows share a key (sharing would only add work), or when a suffix would hold a
    ``forbidden`` token (an image token: its features belong to the prefix's prefill).
    """
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(("row", i) if key is None else ("key", key), []).append(i)
    if len(groups) == len(ids):
        return None
    prefixes, group_of, suffixes, first_row = [], [0] * len(ids), [[] for _ in ids], []
    for g, rows in enumerate(groups.values()):
        n = min(len(ids[i]) for i in rows) - 1
        head = ids[rows[0]]
        for i in rows[1:]:
            row = ids[i]
            n = next((k for k in range(n) if row[k] != head[k]), n)
        prefixes.append(head[:n])
        first_row.append(rows[0])
        for i in rows:
            group_of[i] = g
            suffixes[i] = ids[i][n:]
            if forbidden is not None and forbidden in suffixes[i]:
                return None
    return PrefixPlan(prefixes, group_of, suffixes, first_row)


def left_pad(rows: list[list[int]], pad: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` left-padded to one width: (ids, attention mask)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, x in enumerate(rows):
        if x:
            ids[k, width - len(x):] = torch.tensor(x)
            mask[k, width - len(x):] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def shared_prefix_decode(model, plan: PrefixPlan, image_inputs: dict, pad_id: int, max_new_tokens: int,
                         eos_ids: list[int], compact_at: float = 0.25) -> list[list[int]]:
    """``greedy_decode``'s tokens, with each group's prefix prefilled once and its keys and values copied
    to the group's rows.

    The prefixes are prefilled as one left-padded batch (``image_inputs``: one image per group
    that has one, in group order);
    the cache rows are then copied to the questions (``group_of``) and each row's suffix is
    prefilled after its prefix, left-padded inside the suffix block. Each row's sequence is then
    ``[pad][prefix][pad][suffix]``: the mask hides both pad runs and the positions count only
    real tokens, so every token sees the same keys at the same positions as in the unshared
    prompt, and the answers are the same (tested token for token).
    """
    rows = len(plan.group_of)
    if max_new_tokens < 1:
        return [[] for _ in range(rows)]
    device = next(model.parameters()).device
    p_ids, p_mask = left_pad(plan.prefixes, pad_id, device)
    s_ids, s_mask = left_pad(plan.suffixes, pad_id, device)
    cache = _new_cache(model, p_ids.shape[1] + s_ids.shape[1] + max_new_tokens)
    p_pos = (p_mask.cumsum(-1) - 1).masked_fill(p_mask == 0, 0)
    model(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, **cache_kwargs(cache), use_cache=True,
          logits_to_keep=1, **image_inputs)
    index = torch.tensor(plan.group_of, dtype=torch.long, device=device)
    for layer in cache.layers:
        layer.batch_select_indices(index)
    mask = torch.cat([p_mask[index], s_mask], dim=1)
    positions = (mask.cumsum(-1) - 1)[:, p_ids.shape[1]:].masked_fill(s_mask == 0, 0)
    out = model(input_ids=s_ids, attention_mask=mask, position_ids=positions, **cache_kwargs(cache),
                use_cache=True, logits_to_keep=1)
    return _greedy_steps(model, out, cache, mask, positions[:, -1:], max_new_tokens, eos_ids, compact_at)


def _new_cache(model, capacity: int):
    cache = preallocated_cache(model, capacity)
    if cache is None:
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=model.config)
    return cache


def _greedy_steps(model, out, cache, mask, position, max_new_tokens: int, eos_ids: list[int],
                  compact_at: float) -> list[list[int]]:
    """The decode loop after a prefill whose last logits are ``out``; ``position``: each row's last position."""
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=mask.device)
    rows = torch.arange(mask.shape[0], device=mask.device)  # which original row each live row is
    tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
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
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, **cache_kwargs(cache),
                    use_cache=True)
    return [_until_end(t, eos_ids) for t in tokens]


def _until_end(tokens: list[int], eos_ids: list[int]) -> list[int]:
    for k, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: k + 1]
    return tokens
