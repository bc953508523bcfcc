"""Text-only records (issue #28.1) and test-record keys that follow the task's protocols (#28.3).

About half of ScienceQA's questions have no image. LLaVA's loader and its ScienceQA evaluation
take such a record and prompt it without image tokens; so do coin's loader, ``coin data check``
and every backbone, in batches that mix both kinds: the text-only row's input holds no image
token, and its answer in a mixed batch is its answer alone. A test record holds the keys its
task's protocols read: Grounding's are scored on ``answer_bbox``, so a record without ``answer``
is valid there, and still refused for a VQA task.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

import tinyhf
import tinyminigpt
import tinyqwenvl
from coin.config_load import section
from coin.benchmarks.coin.builders import build_source
from coin.benchmarks.check import Manifest, check_task
from coin.data.coin_json import DataError, eval_samples, load_test, load_train
from coin.data.records import check_records
from coin.data.sample import Sample
from coin.models import load_model
from tinyvlm import tiny_samples, tiny_vlm
import raw_sources as rs

QUIET = lambda *a: None  # noqa: E731
SQA = "Which word is a noun?\nA. run\nB. cat\nAnswer with the option's letter from the given choices directly."


def _train(rid: str, image: str | None = "a.png", human: str = "<image>\nWhat is it?") -> dict:
    rec = {"id": rid, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": "cat"}]}
    return rec if image is None else {**rec, "image": image}


def _test(qid: str, image: str | None = "a.png", **kw) -> dict:
    rec = {"question_id": qid, "text": "What is it?", "answer": "cat", **kw}
    return rec if image is None else {**rec, "image": image}


def _tree(root, task: str, train: list, test: list):
    folder = root / "Instructions_Original" / task
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    Image.new("RGB", (8, 8), "red").save(root / "a.png")
    return folder


# ----------------------------------------------------------------------------- records and the check


def test_text_only_train_and_test_records_load(tmp_path):
    folder = _tree(tmp_path, "ScienceQA",
                   [_train("t0"), _train("t1", image=None, human=SQA), {**_train("t2", human=SQA), "image": None}],
                   [_test("q0"), _test("q1", image=None, text=SQA, answer="B")])
    samples = load_train(folder / "train.json", tmp_path, "ScienceQA")
    assert [s.image for s in samples] == [str((tmp_path / "a.png").resolve()), None, None]
    assert samples[1].prompt == SQA  # no <image> line to strip
    records = load_test(folder / "test.json", tmp_path, "ScienceQA")
    assert [r.image_path for r in records] == [str((tmp_path / "a.png").resolve()), None]
    assert [s.image for s in eval_samples(records)] == [str((tmp_path / "a.png").resolve()), None]


def test_data_check_counts_the_text_only_records_of_each_task(tmp_path):
    _tree(tmp_path, "ScienceQA", [_train("t0"), _train("t1", image=None, human=SQA), _train("t2", image=None)],
          [_test("q0", image=None, text=SQA, answer="B")])
    m = check_task(tmp_path, tmp_path, "original", "ScienceQA", open_images=False)
    assert m.ok, m.malformed
    assert m.counts == {"train": 3, "test": 1} and m.no_image == {"train": 2, "test": 1}
    assert m.images == 1  # only the one image is checked
    manifest = Manifest(str(tmp_path), str(tmp_path), "original", [m])
    assert manifest.to_dict()["tasks"][0]["no_image"] == {"train": 2, "test": 1}
    head, row = manifest.format().splitlines()[1:3]
    assert "no image" in head
    assert row.split()[:4] == ["ScienceQA", "3", "1", "3"]  # task, train, test, no image


def test_grounding_needs_answer_bbox_not_answer_and_vqa_still_needs_answer(tmp_path):
    box = {"question_id": "g0", "image": "a.png", "answer_bbox": "[0.1, 0.2, 0.3, 0.4]",
           "text": "Please provide the bounding box coordinate of the region this sentence describes: the cat"}
    _tree(tmp_path, "Grounding", [_train("t0")], [box])
    m = check_task(tmp_path, tmp_path, "original", "Grounding", open_images=False)
    assert m.ok, m.malformed
    assert load_test(tmp_path / "Instructions_Original" / "Grounding" / "test.json", tmp_path,
                     "Grounding")[0].question_id == "g0"
    # a VQA task's record without `answer` is still refused, by the check and the loader alike
    _tree(tmp_path, "GQA", [_train("t0")], [_test("q0"), {k: v for k, v in _test("q1").items() if k != "answer"}])
    m = check_task(tmp_path, tmp_path, "original", "GQA", open_images=False)
    assert [p.split(": ", 1)[1] for p in m.malformed] == ["missing key 'answer'"]
    with pytest.raises(DataError, match=r"record 1 \(question_id q1\): missing key 'answer'"):
        load_test(tmp_path / "Instructions_Original" / "GQA" / "test.json", tmp_path, "GQA")
    # the keys come from what each protocol reads; a Grounding record without its box is refused in those words
    from coin.tasks.protocol_sets import answer_keys, task_protocols

    assert answer_keys("Grounding") == ("answer_bbox",) and answer_keys("GQA") == ("answer",)
    assert all(p.reads == ("answer_bbox",) for p in task_protocols("Grounding").protocols)
    (verdict,) = check_records([{k: v for k, v in box.items() if k != "answer_bbox"}], "test", "f.json",
                               answer_keys("Grounding"))
    assert verdict.problem == "missing key 'answer_bbox'"


def test_scienceqa_builder_keeps_every_problem_of_the_test_split(tmp_path):
    raw = rs.write_scienceqa(tmp_path / "raw")
    problems = json.loads((raw / "problems.json").read_text())
    problems["11"] = {**problems["1"], "split": "test"}  # a text-only test problem
    (raw / "problems.json").write_text(json.dumps(problems))
    splits = json.loads((raw / "pid_splits.json").read_text())
    splits["test"] = ["9", "11"]
    (raw / "pid_splits.json").write_text(json.dumps(splits))
    build_source("scienceqa", raw, tmp_path / "out")
    folder = tmp_path / "out" / "Instructions_Original" / "ScienceQA"
    test = json.loads((folder / "test.json").read_text())
    assert [r["question_id"] for r in test] == ["9", "11"]
    assert "image" not in test[1] and test[1]["answer"] == "B"
    records = load_test(folder / "test.json", tmp_path, "ScienceQA")
    assert records[1].image_path is None and records[1].has("image_path")


# ----------------------------------------------------------------------------- backbones


def _mixed(root) -> list[Sample]:
    """Two image questions around a text-only one (a batch mixes both kinds)."""
    a, b = tiny_samples(root, "TaskA", 2)
    return [a, Sample("text", "ScienceQA", None, "Which word is a noun? A. run B. cat", "B"), b]


def _sharpen(model, seed: int = 0):
    """``model`` with its matrices redrawn far larger than at init (as ``tinyvlm.sharp_vlm_and_samples``): at
    init scale the next token hardly depends on the context, so a leak across rows or padding would not
    change the answers compared here."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.25)
    return model


def _image_token_id(vlm) -> int:
    cfg = vlm.model.config
    return cfg.image_token_id if getattr(cfg, "image_token_id", None) is not None else cfg.image_token_index


def _check_mixed(vlm, samples: list[Sample], image_id: int) -> None:
    """Training: no image token in the text-only row, pixels for the image rows only, a finite loss that
    backpropagates; generation: the text-only answer in the mixed batch equals its answer alone."""
    batch = vlm.train_batch(samples)
    counts = (batch["input_ids"] == image_id).sum(1).tolist()
    assert counts[1] == 0 and counts[0] > 0 and counts[2] > 0
    vlm.model.train()
    loss = vlm.model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    vlm.model.zero_grad()
    alone = vlm.train_batch([samples[1]])
    assert "pixel_values" not in alone and not (alone["input_ids"] == image_id).any()
    assert torch.isfinite(vlm.model(**alone).loss)
    vlm.model.eval()
    prompt = vlm.generation_batch(samples)["input_ids"]
    assert not (prompt[1] == image_id).any() and (prompt[0] == image_id).any()
    mixed = vlm.generate(samples, 6)
    assert mixed[1] == vlm.generate([samples[1]], 6)[0]
    assert mixed[0] == vlm.generate([samples[0]], 6)[0]


def test_tiny_backbone_trains_and_generates_a_mixed_batch(tmp_path):
    vlm = tiny_vlm(0)
    _sharpen(vlm.model)
    samples = _mixed(tmp_path)
    _check_mixed(vlm, samples, _image_token_id(vlm))
    text = vlm.tokenizer.decode(vlm.train_batch([samples[1]])["input_ids"][0])
    assert "<image>" not in text and text.startswith("<s>USER: Which word")
    expected = vlm.generate(samples, 6)
    for decoding, share in (("hf", False), ("coin", True)):  # model.generate; prefix sharing skips the text row
        vlm.decoding, vlm.share_prefix = decoding, share
        assert vlm.generate(samples + [samples[0]], 6) == expected + [expected[0]]
    vlm.decoding, vlm.share_prefix = "coin", False
    for p in vlm.model.model.vision_tower.parameters():
        p.requires_grad_(False)
    vlm.enable_vision_cache()
    assert vlm.generate(samples, 6) == expected
    assert len(vlm.vision_cache) == 2  # the two images; nothing for the text-only row


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"llava": tinyhf.build_llava(root / "llava"), "qwen": tinyhf.build_qwen2_vl(root / "qwen2-vl")}


@pytest.mark.parametrize("name,folder", [("llava", "llava"), ("hf", "llava"), ("qwen2-vl", "qwen")])
def test_hf_backbones_train_and_generate_a_mixed_batch(name, folder, hf_folders, tmp_path):
    vlm = load_model(section("model", name=name, path=str(hf_folders[folder])), log=QUIET)
    _sharpen(vlm.model)
    samples = _mixed(tmp_path)
    _check_mixed(vlm, samples, _image_token_id(vlm))
    if name == "llava":  # vicuna_v1 as LLaVA writes a text-only turn: no <image> line
        text = vlm.tokenizer.decode(vlm.train_batch([samples[1]])["input_ids"][0])
        assert "<image>" not in text and "USER: Which word is a noun?" in text


def test_minigpt_v2_prompts_a_text_only_sample_without_the_image_span(tmp_path):
    pieces = tinyminigpt.write_pieces(tmp_path / "minigpt")
    vlm = load_model(section("model", **tinyminigpt.model_section(pieces)), log=QUIET, progress=False)
    samples = _mixed(tmp_path / "images")
    batch = vlm.train_batch(samples)
    assert batch["image_mask"].sum(1).tolist() == [vlm.num_image_tokens, 0, vlm.num_image_tokens]
    assert batch["pixel_values"].shape[0] == 2
    assert "<Img>" not in vlm.tokenizer.decode(vlm.train_batch([samples[1]])["input_ids"][0])
    assert torch.isfinite(vlm.model(**batch).loss)
    vlm.model.eval()
    assert vlm.generate(samples, 5)[1] == vlm.generate([samples[1]], 5)[0]


def test_qwen_vl_chat_writes_no_picture_for_a_text_only_sample(tmp_path):
    folder = tinyqwenvl.build(tmp_path / "Qwen-VL-Chat")
    vlm = load_model(section("model", **tinyqwenvl.model_section(folder)), log=QUIET)
    samples = _mixed(tmp_path / "images")
    assert vlm.prompt_text(samples[1]) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                           "<|im_start|>user\nWhich word is a noun? A. run B. cat<|im_end|>\n"
                                           "<|im_start|>assistant\n")
    assert "Picture 1: <img>" in vlm.prompt_text(samples[0])
    batch = vlm.train_batch(samples)
    assert torch.isfinite(vlm.model(**batch).loss)
    assert vlm.generate(samples, 4)[1] == vlm.generate([samples[1]], 4)[0]
