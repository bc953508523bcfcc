"""LLaVA's training ids and labels, token for token: coin's ``vicuna_v1`` path against ``preprocess_v1`` (issue 28.12).

A sentencepiece BPE model in Llama's style (byte fallback, a dummy prefix) is trained here on a
small text; it is loaded three ways: as ``LlamaTokenizer`` (``LlamaTokenizerFast``; one class in
transformers 5) with ``legacy=True`` and ``legacy=False``, and as the sentencepiece-backed slow
tokenizer in legacy mode, which is what LLaVA's ``use_fast=False`` loaded (the one where an answer
tokenised on its own as `` {answer}`` starts with a lone ``▁``). The reference below is LLaVA's
``preprocess_v1`` and ``tokenizer_image_token`` written out, with the image's one index expanded
to the processor's image tokens.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import tinyvlm
from coin.data.sample import Sample
from coin.models.conversation import VICUNA_V1_SYSTEM
from coin.models.tiny.model import build_model, build_processor
from coin.models.llava.wrapper import LlavaVLM

IGNORE = -100
SAMPLES = [
    Sample("one", "VQAv2", "", "What colour is the square?\nAnswer the question using a single word or phrase.",
           "red"),
    Sample("box", "Grounding", "", "Please provide the bounding box coordinate of the region this sentence "
           "describes: the red circle", "[0.12, 0.50, 0.33, 1.00]"),
    Sample("two", "GQA", "", "What colour is it?", "a red circle",
           turns=(("And the shape?\nAnswer the question using a single word or phrase.", "square"),
                  ("Is it blue?", "no"))),
]


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory):
    """A Llama-style sentencepiece model (BPE, byte fallback, dummy prefix) saved as ``tokenizer.model``."""
    sentencepiece = pytest.importorskip("sentencepiece")
    root = tmp_path_factory.mktemp("sp")
    words = (VICUNA_V1_SYSTEM + " USER: ASSISTANT: What colour is the square it? And the shape? Is it blue? "
             "Answer the question using a single word or phrase. Please provide the bounding box coordinate of "
             "the region this sentence describes: a red circle square no yes [0.12, 0.50, 0.33, 1.00]").split()
    lines = [" ".join(words[(7 * k + j) % len(words)] for j in range(9)) for k in range(300)]
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(root / "corpus.txt"), model_prefix=str(root / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        minloglevel=2)
    return root


def _tokenizer(folder, kind: str):
    if kind == "slow-legacy":
        from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

        tok = SentencePieceBackend(vocab_file=str(folder / "tokenizer.model"), legacy=True, unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", special_tokens_pattern="bos")
    else:
        from transformers import LlamaTokenizer

        tok = LlamaTokenizer.from_pretrained(folder, legacy=kind == "fast-legacy", add_bos_token=True)
    tok.add_special_tokens({"pad_token": "<pad>"})
    tok.add_tokens(["<image>"], special_tokens=True)
    assert tok("x").input_ids[0] == tok.bos_token_id  # LLaVA's counting assumes a BOS
    return tok


def _reference(tok, sample: Sample, n_image: int) -> tuple[list[int], list[int], bool]:
    """LLaVA's ``preprocess_v1`` (llava/train/train.py) on one conversation: ids, labels, and whether
    its count added up (where it does not, LLaVA masks the whole sample and prints a warning)."""
    image = tok.convert_tokens_to_ids("<image>")

    def tokenizer_image_token(prompt: str) -> list[int]:
        chunks = [tok(c).input_ids for c in prompt.split("<image>")]
        out, offset = [], 0
        if chunks and chunks[0] and chunks[0][0] == tok.bos_token_id:
            offset = 1
            out.append(chunks[0][0])
        for k, x in enumerate(chunks):
            out += ([image] * n_image if k else []) + x[offset:]
        return out

    conversation = VICUNA_V1_SYSTEM + " "  # conv_vicuna_v1.get_prompt(): SeparatorStyle.TWO, seps " " and "</s>"
    for k, (q, a) in enumerate([(sample.prompt, sample.answer), *sample.turns]):
        conversation += "USER: " + ("<image>\n" + q if k == 0 else q) + " " + "ASSISTANT: " + a + "</s>"
    ids = tokenizer_image_token(conversation)
    target, total, cur = list(ids), len(ids), 1
    target[:cur] = [IGNORE]
    sep = " ASSISTANT: "
    for i, rou in enumerate(conversation.split("</s>")):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(tokenizer_image_token(rou))
        instruction_len = len(tokenizer_image_token(parts[0])) - 2
        if i != 0 and not tok.legacy:  # IS_TOKENIZER_GREATER_THAN_0_14
            round_len -= 1
            instruction_len -= 1
        target[cur:cur + instruction_len] = [IGNORE] * instruction_len
        cur += round_len
    target[cur:] = [IGNORE] * (len(target) - cur)
    if cur != total:
        return ids, [IGNORE] * len(ids), False
    return ids, target, True


def _runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The ids of each contiguous labelled run (a label is always its input token)."""
    runs: list[list[int]] = []
    for k, (i, y) in enumerate(zip(ids, labels)):
        if y != IGNORE:
            assert y == i
            if k == 0 or labels[k - 1] == IGNORE:
                runs.append([])
            runs[-1].append(i)
    return runs


@pytest.mark.parametrize("kind", ["slow-legacy", "fast-legacy", "fast-nonlegacy"])
def test_vicuna_v1_ids_and_labels_are_preprocess_v1s(sp_folder, kind, tmp_path):
    tok = _tokenizer(sp_folder, kind)
    vlm = LlavaVLM(build_model(tinyvlm.MICRO, tok), build_processor(tok, tinyvlm.MICRO), conversation="vicuna_v1")
    image = tmp_path / "image.png"
    Image.new("RGB", (tinyvlm.MICRO.image_size,) * 2, "red").save(image)
    consistent = []
    for s in SAMPLES:
        s = Sample(s.id, s.task, str(image), s.prompt, s.answer, s.turns)
        batch = vlm.train_batch([s])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        ref_ids, ref_labels, ok = _reference(tok, s, vlm.num_image_tokens)
        assert ids == ref_ids, (kind, s.id)  # the whole conversation, as LLaVA tokenised it
        if ok:
            assert labels == ref_labels, (kind, s.id)
        else:  # LLaVA's count went wrong and it dropped the sample; coin labels its answers
            assert not any(y != IGNORE for y in ref_labels)
        runs = _runs(ids, labels)  # each labelled run is one answer and its </s>, in either case
        assert [tok.decode(r[:-1]).strip() for r in runs] == [s.answer, *[a for _, a in s.turns]], (kind, s.id)
        assert all(r[-1] == tok.eos_token_id for r in runs)
        prompt = vlm.generation_batch([s])["input_ids"][0].tolist()
        assert ids[:len(prompt)] == prompt and labels[len(prompt) - 1] == IGNORE != labels[len(prompt)]
        consistent.append(ok)
    # the comparison is not vacuous: LLaVA's own count adds up for every legacy case and every first round
    assert consistent[:2] == [True, True] and (kind == "fast-nonlegacy" or all(consistent))


def test_an_answer_alone_gets_a_lone_prefix_token_that_the_conversation_never_has(sp_folder):
    """Why the whole conversation is tokenised: a legacy sentencepiece tokenizer writes `` red`` alone as a
    lone ``▁`` and then the tokens the answer has after ``ASSISTANT:``."""
    tok = _tokenizer(sp_folder, "slow-legacy")
    alone = tok.convert_ids_to_tokens(tok(" red", add_special_tokens=False).input_ids)
    in_context = tok.convert_ids_to_tokens(tok("ASSISTANT: red", add_special_tokens=False).input_ids)
    answer = in_context[in_context.index(":") + 1:]
    assert alone == ["\u2581", *answer] and answer[0].startswith("\u2581") and answer[0] != "\u2581"


def test_the_tiny_model_keeps_its_piecewise_tokenisation(tmp_path):
    """The built-in tiny model (byte-level BPE, the plain conversation) takes the old path, unchanged."""
    vlm = tinyvlm.tiny_vlm()
    assert vlm.conversation.name == "plain" and not vlm.conversation.whole
    path = tmp_path / "a.png"
    Image.new("RGB", (tinyvlm.MICRO.image_size,) * 2, "red").save(path)
    s = Sample("a", "t", str(path), "What colour is the square?", "red", turns=(("Name the shape.", "circle"),))
    b = vlm.train_batch([s])
    tok = vlm.tokenizer
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt = [tok.bos_token_id] + enc(vlm.prompt_text(s.prompt))
    a1, p2, a2 = enc(" red") + [tok.eos_token_id], enc("USER: Name the shape. ASSISTANT:"), enc(" circle")
    expected = prompt + a1 + p2 + a2 + [tok.eos_token_id]
    assert b["input_ids"][0].tolist() == expected
    assert b["labels"][0].tolist() == [IGNORE] * len(prompt) + a1 + [IGNORE] * len(p2) + a2 + [tok.eos_token_id]
    assert torch.equal(vlm.generation_batch([s])["input_ids"][0], torch.tensor(prompt))
