"""Training sequences as the wrappers build them: their length limit, the cut at it, and right-padded batches.

``SequenceBatches`` is the part the wrappers that write each sample's token sequence themselves share
(MiniGPT-v2's and Qwen-VL-Chat's): counting and cutting the sequences ``max_length`` is shorter than,
and padding a batch of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from coin.data.sample import Sample


def resolve_max_length(max_length: int | None, tokenizer, default: int | None = None) -> int | None:
    """The training sequence limit: ``max_length`` if set, else ``default`` (a backbone's recipe),
    else the tokenizer's ``model_max_length`` when it holds a real value (Hugging Face writes
    about 1e30 when a folder sets none); None: no limit."""
    if max_length is not None:
        return max_length
    if default is not None:
        return default
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 10**7 else None


def truncate(sample: Sample, ids: list[int], labels: list[int], prompt_len: int, max_length: int | None,
             seen: set[str]) -> tuple[list[int], list[int]]:
    """``ids`` and ``labels`` cut to ``max_length`` at the end (LLaVA cuts at ``model_max_length``),
    the sample's id added to ``seen`` when cut. The prompt with its image tokens must fit whole:
    a cut through the image tokens would not match the image's features."""
    if max_length is None or len(ids) <= max_length:
        return ids, labels
    if prompt_len > max_length:
        what = "its prompt" if sample.image is None else f"({sample.image}): its prompt with the image"
        raise ValueError(f"record {sample.id} {what} is {prompt_len} tokens, "
                         f"longer than model.max_length {max_length}; raise model.max_length")
    seen.add(sample.id)
    return ids[:max_length], labels[:max_length]


def right_pad(ids: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` (``pad_id`` after each row's tokens), ``attention_mask`` (1 on its tokens) and ``labels``
    (-100 after them), right-padded to the longest row."""
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    lab = torch.full((len(ids), width), -100, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for k, (x, y) in enumerate(zip(ids, labels)):
        input_ids[k, : len(x)] = torch.tensor(x)
        lab[k, : len(y)] = torch.tensor(y)
        mask[k, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": lab}


class SequenceBatches:
    """Base of a wrapper that writes each training sample's token sequence itself, in ``_sequence``.

    ``_sequence(s)`` returns the uncut ``(ids, labels, prompt length, *per-token lists)``: the per-token
    lists (MiniGPT-v2's image positions) are cut with the ids. The wrapper sets ``max_length`` (None: no
    limit), ``truncated`` (the ids of the samples cut, a set) and ``pad_id``.
    """

    max_length: int | None
    truncated: set[str]
    pad_id: int

    def _sequence(self, s: Sample) -> tuple:
        raise NotImplementedError

    def truncated_ids(self, samples: list[Sample]) -> list[str]:
        """Ids of the samples whose training sequence ``max_length`` cuts."""
        if self.max_length is None:
            return []
        return [s.id for s in samples if len(self._sequence(s)[0]) > self.max_length]

    def cut_sequences(self, samples: list[Sample]) -> list[tuple[list, ...]]:
        """Each sample's ``(ids, labels, *per-token lists)`` cut to ``max_length`` (the cut ones' ids go to
        ``truncated``)."""
        rows = []
        for s in samples:
            ids, labels, prompt_len, *per_token = self._sequence(s)
            ids, labels = truncate(s, ids, labels, prompt_len, self.max_length, self.truncated)
            rows.append((ids, labels, *(p[: len(ids)] for p in per_token)))
        return rows

    def padded(self, rows: list[tuple[list, ...]]) -> dict[str, torch.Tensor]:
        """``right_pad`` of the rows' ids and labels with ``pad_id``."""
        return right_pad([r[0] for r in rows], [r[1] for r in rows], self.pad_id)


IGNORE = -100  # the label of a position no loss reads (transformers' and LLaVA's ignore index)


def keep_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` booleans: the positions whose next token has a label (where an answer token is predicted).

    The positions the labelled training loss computes logits at (``coin.engine.lm_loss``) and the ones a
    method that reads the answer's predictions compares (LwF's exemplar-free distillation)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep
