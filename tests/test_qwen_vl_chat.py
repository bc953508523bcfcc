"""Qwen-VL-Chat (model.name qwen-vl-chat) on a stand-in folder with the released layout (tests/tinyqwenvl.py).

The stand-in's code is ours (tests/fixtures/qwen_vl_chat_standin/), loaded only as remote code:
these tests exercise coin's side (the remote-code gate, folder checks, image paths in the text,
both prompt formats, labels, LoRA targets, decoding, two stages of ``coin run`` with resume),
not Qwen-VL-Chat's own modeling code.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

import tinyqwenvl
from coin.config_load import from_dict, section
from coin.config import ConfigError
from coin.data.sample import Sample
from coin.models import load_model
from coin.models.qwen_vl_chat.backbone import PROMPT_FORMATS
from coin.models.llava.parts import MissingPartError, PartsError
from coin.models.qwen_vl_chat.wrapper import PROMPTS, image_tag
from coin.options import OptionsError

QUIET = lambda *a: None  # noqa: E731


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tinyqwenvl.build(tmp_path_factory.mktemp("qwen-vl") / "Qwen-VL-Chat")


@pytest.fixture(scope="module")
def vlm(folder):
    return load_model(section("model", **tinyqwenvl.model_section(folder)), log=QUIET)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate([(64, 64), (80, 40), (40, 96), (64, 64)]):
        paths.append(str(root / f"{k}.png"))
        Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()).save(paths[-1])
    return paths


def test_the_folder_has_the_released_layout(folder):
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "configuration_qwen.py", "modeling_qwen.py", "visual.py", "qwen_generation_utils.py",
            "tokenization_qwen.py", "qwen.tiktoken", "tokenizer_config.json", "pytorch_model.bin.index.json"} <= names
    shards = sorted(n for n in names if n.startswith("pytorch_model-"))
    assert shards == ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    part = torch.load(folder / shards[0], weights_only=True)
    assert part and all(t.dtype == torch.bfloat16 for t in part.values())  # as released: bf16 .bin shards


def test_remote_code_runs_only_when_the_config_allows_it(folder):
    with pytest.raises((ConfigError, OptionsError), match="model.trust_remote_code must be true for model.name "
                                                         "'qwen-vl-chat'"):
        from_dict({"model": {"name": "qwen-vl-chat", "path": str(folder)}})
    with pytest.raises((ConfigError, OptionsError), match="prompt must be one of chatml, coin-eval"):
        from_dict({"model": {"name": "qwen-vl-chat", "path": str(folder), "trust_remote_code": True, "prompt": "x"}})
    assert PROMPT_FORMATS == tuple(PROMPTS)


def test_a_folder_without_its_code_or_weights_is_refused_by_name(folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "modeling_qwen.py").unlink()
    with pytest.raises(MissingPartError, match=r"missing modeling_qwen.py"):
        load_model(section("model", **tinyqwenvl.model_section(broken)), log=QUIET)
    with pytest.raises(MissingPartError, match="does not exist"):
        load_model(section("model", **tinyqwenvl.model_section(tmp_path / "absent")), log=QUIET)
    shutil.copy(folder / "modeling_qwen.py", broken / "modeling_qwen.py")
    index = json.loads((broken / "pytorch_model.bin.index.json").read_text())
    shard = broken / "pytorch_model-00001-of-00002.bin"
    part = torch.load(shard, weights_only=True)
    dropped = sorted(part)[0]
    del part[dropped]
    torch.save(part, shard)
    index["weight_map"].pop(dropped)
    (broken / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(PartsError, match=rf"missing weight '{dropped}'"):
        load_model(section("model", **tinyqwenvl.model_section(broken)), log=QUIET)


def test_image_paths_are_checked_before_they_reach_the_model(images, tmp_path):
    assert image_tag(Sample("a", "t", images[0], "q")) == f"<img>{images[0]}</img>"
    for path, message in [("https://example.com/a.png", "not an existing local file"),
                          (str(tmp_path / "absent.png"), "not an existing local file"),
                          (str(tmp_path / ("x" * 250) / "a.png"), r"bytes; Qwen-VL.s tokenizer holds at most 256"),
                          (str(tmp_path / "a<b>.png"), "holds '<' or '>'")]:
        if not path.startswith("http"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            if "absent" not in path:
                Image.new("RGB", (4, 4)).save(path, format="PNG")
        with pytest.raises(ValueError, match=message):
            image_tag(Sample("r1", "t", path, "q"))


def _text(vlm, ids) -> str:
    return vlm.tokenizer.decode([i for i in ids.tolist() if i != vlm.tokenizer.special["<imgpad>"]])


def test_chatml_prompt_with_the_picture_and_labels_on_the_answer_and_im_end(vlm, images):
    s = Sample("a", "VQAv2", images[0], "What is it?", "red")
    batch = vlm.train_batch([s])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    start = int((labels != -100).nonzero()[0])
    assert _text(vlm, ids[:start]) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                       f"Picture 1: <img>{images[0]}</img>\nWhat is it?<|im_end|>\n"
                                       "<|im_start|>assistant\n")
    assert vlm.tokenizer.decode(labels[start:]) == "red<|im_end|>"
    assert (ids == vlm.tokenizer.special["<imgpad>"]).sum() + len(images[0].encode()) == 256  # the path's span


def test_coin_eval_prompt_is_coin_s_evaluation_string_in_training_too(folder, images):
    plain = load_model(section("model", **tinyqwenvl.model_section(folder, prompt="coin-eval")), log=QUIET)
    s = Sample("a", "VQAv2", images[0], "What is it?", "red")
    batch = plain.train_batch([s])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    start = int((labels != -100).nonzero()[0])
    assert _text(plain, ids[:start]) == (f"System:You are a helpful assistant.\n\n<img>{images[0]}</img>What is it? "
                                         "Assistant:")
    assert plain.tokenizer.decode(labels[start:]) == " red<|endoftext|>"
    gen = plain.generation_batch([s])["input_ids"][0]
    assert torch.equal(gen, ids[:start])  # one format for training and evaluation


def test_lora_lands_on_the_lm_only_and_nothing_else_trains(folder):
    from coin.adapters import attach_adapter

    fresh = load_model(section("model", **tinyqwenvl.model_section(folder)), log=QUIET)
    attach_adapter(fresh, section("adapter", r=2, alpha=4))
    trainable = {n for n, p in fresh.model.named_parameters() if p.requires_grad}
    assert {n.split(".lora_")[0] for n in trainable} == {
        f"base_model.model.transformer.h.{i}.{m}" for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.w1", "mlp.w2")}  # not mlp.c_proj, not the ViT's c_proj
    assert all(".lora_" in n for n in trainable)


def test_batched_generation_equals_one_by_one(vlm, images):
    prompts = ["x", "What is the object in the image?\nAnswer the question using a single word or phrase.",
               "Describe the image. " * 10, "Is there a red circle?"]
    samples = [Sample(f"s{k}", "VQAv2", images[k], p) for k, p in enumerate(prompts)]
    single = [vlm.generate([s], max_new_tokens=8)[0] for s in samples]
    assert vlm.generate(samples, max_new_tokens=8) == single
    assert vlm.generate(samples[::-1], max_new_tokens=8) == single[::-1]
    assert len(set(single)) > 1


@pytest.mark.slow
def test_run_two_stages_then_resume_gives_the_same_matrix(folder, micro_config, tmp_path):
    from coin.engine.run import run

    cfg = micro_config
    cfg["model"] = tinyqwenvl.model_section(folder)
    cfg["train"]["lr"] = 3e-2  # enough for the adapter to change the answers, so reloading it is tested
    cfg["data"]["synth"]["n_train"] = 16  # two steps a stage: the image's 256 tokens make each step long
    out = tmp_path / "run"
    first = run(from_dict(cfg), out, progress=False, log=QUIET)
    assert first["matrix"][1][0] is not None and first["matrix"][1][1] is not None
    stage2 = out / "stages" / "02-Grounding"
    before = {p.name: p.read_text() for p in (stage2 / "predictions").glob("*.jsonl")}
    zero = (out / "stages" / "00-zeroshot" / "predictions" / "ImageNet.jsonl").read_text()
    assert zero != before["ImageNet.jsonl"], "training should change the answers"
    (stage2 / "DONE").unlink()
    (stage2 / "scores.json").unlink()
    shutil.rmtree(stage2 / "predictions")
    logs: list[str] = []
    again = run(from_dict(cfg), out, progress=False, log=logs.append)
    assert any("2/2 Grounding: trained earlier, evaluating" in line for line in logs)
    assert again["matrix"] == first["matrix"] and again["zero_shot"] == first["zero_shot"]
    assert {p.name: p.read_text() for p in (stage2 / "predictions").glob("*.jsonl")} == before


def test_the_shipped_config_has_coin_s_qwen_vl_recipe_and_passes_its_dry_run(tmp_path, monkeypatch, capsys):
    from test_minigpt_v2 import dry_run_with_every_file

    cfg, out = dry_run_with_every_file("qwen-vl-chat/lora.yaml", tmp_path, monkeypatch, capsys)
    m, a, t = cfg.model, cfg.adapter, cfg.train
    assert (m.name, m.trust_remote_code, m.options.prompt) == ("qwen-vl-chat", True, "chatml")
    assert (a.type, a.r, a.alpha, a.dropout, a.train_projector) == ("lora", 64, 16, 0.05, False)
    assert (t.lr, t.epochs, t.batch_size * t.grad_accum * 8) == (1e-5, 1, 40)
    assert set(cfg.eval.max_new_tokens.values()) == {30} and len(cfg.eval.max_new_tokens) == 8
    assert "model.path:" in out and "(present)" in out


def test_a_tokenizer_that_needs_tiktoken_names_the_extra_when_it_is_missing(folder, tmp_path, monkeypatch):
    import importlib.util

    real = tmp_path / "real"
    shutil.copytree(folder, real)
    (real / "tokenization_qwen.py").write_text("import tiktoken\n" + (folder / "tokenization_qwen.py").read_text())
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tiktoken" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r"needs the tiktoken package; install it with pip install 'coin-cl\[qwen-vl\]'"):
        load_model(section("model", **tinyqwenvl.model_section(real)), log=QUIET)
