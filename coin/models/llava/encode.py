"""LLaVA's ``preprocess_v1``: a ``vicuna_v1`` conversation tokenised whole, labels on the assistant turns.

LLaVA (and CoIN's copy of it, ``ETrain/Dataset/LLaVA/llava_dataset.py``) writes a training
conversation as one string, ``{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2}
ASSISTANT: {a2}</s>``, and tokenises it with ``tokenizer_image_token``: the text is cut at
``<image>``, each piece is tokenised on its own (each with a BOS, kept on the first piece only)
and the image goes between them; here it is the processor's image tokens, one per feature.
Generation prompts are tokenised the same way, so a prompt is exactly the start of its
training sequence.

An answer tokenised on its own (`` {answer}``, as coin did before) is not what LLaVA trained on:
a legacy-mode Llama tokenizer (LLaVA's slow ``LlamaTokenizer``) puts its dummy prefix before the
space, a lone ``▁`` token the whole conversation never has, and a non-legacy one writes ``USER``
after ``</s>`` without the ``▁`` that a string of its own starts with.

LLaVA finds the labels by counting each round's tokens (the round alone, less 2 for the BOS and
the ``▁`` of ``ASSISTANT: ``, less 1 more after the first round for a non-legacy tokenizer) and
labels from the end of ``ASSISTANT:`` through ``</s>``. Here each labelled span is found by
tokenising the conversation up to its start and up to its end, which gives the same labels
wherever LLaVA's count adds up; where it does not (a non-legacy tokenizer whose ``USER`` after
``</s>`` is not one token shorter than alone), LLaVA printed "tokenization mismatch" and
trained on none of the sample, and here its answers are labelled. A tokenizer that splits the
text differently at a span's edge than inside the whole conversation is refused by name.
"""

from __future__ import annotations

from typing import Sequence

from coin.models.conversation import Conversation

__all__ = ["IGNORE_INDEX", "encode_conversation", "encode_with_image"]

IGNORE_INDEX = -100


def encode_with_image(tokenizer, texts: Sequence[str], image_ids: Sequence[int],
                      placeholder: str = "<image>") -> list[list[int]]:
    """Each text as LLaVA's ``tokenizer_image_token`` gives it, the image expanded to ``image_ids``:
    a BOS, then the pieces between placeholders tokenised on their own (one batched call)."""
    pieces = [t.split(placeholder) for t in texts]
    flat = [p for ps in pieces for p in ps]
    encoded = iter(tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else [])
    out = []
    for ps in pieces:
        ids = [tokenizer.bos_token_id]
        for k in range(len(ps)):
            ids += (list(image_ids) if k else []) + list(next(encoded))
        out.append(ids)
    return out


def encode_conversation(tokenizer, conv: Conversation, turns: Sequence[tuple[str, str]], image_ids: Sequence[int],
                        placeholder: str = "<image>", sample_id: str = "?") -> tuple[list[int], list[int], int]:
    """``(ids, labels, prompt length)`` of a conversation of ``(question, answer)`` turns (the first question
    holds the placeholder): the whole string tokenised, labels on each answer and its end of turn."""
    eos = tokenizer.eos_token
    text, spans = "", []
    for k, (question, answer) in enumerate(turns):
        text += conv.first_prompt(question) if k == 0 else conv.turn(question)
        start = len(text)
        text += conv.answer(answer) + eos
        spans.append((start, len(text)))
    cuts = sorted({c for span in spans for c in span} - {len(text)})
    encoded = encode_with_image(tokenizer, [text] + [text[:c] for c in cuts], image_ids, placeholder)
    ids, at = encoded[0], {len(text): len(encoded[0])}
    for c, prefix in zip(cuts, encoded[1:]):
        if ids[:len(prefix)] != prefix:
            raise ValueError(f"sample {sample_id}: the tokenizer splits the conversation differently where an "
                             f"answer starts or ends ({text[max(0, c - 20):c + 20]!r}); cannot place its labels")
        at[c] = len(prefix)
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        labels[at[start]:at[end]] = ids[at[start]:at[end]]
    return ids, labels, at[spans[0][0]]
