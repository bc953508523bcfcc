"""MiniGPT-v2 (model.name minigpt-v2) from tiny random pieces in its released formats (tests/tinyminigpt.py).

Every weight of the assembled model comes from a piece (the released LoRA merged at its alpha);
a wrong key, shape or file is refused naming the file; the image becomes four concatenated patch
tokens per LM token; labels cover the answer only; the native prompt's identifiers and box
conversions; and two stages of ``coin run`` with evaluation, resume and batched = one-by-one answers.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image

import tinyminigpt as tiny
from coin.config_load import from_dict, section
from coin.data.sample import Sample
from coin.models import load_model
from coin.models.llava.parts import MissingPartError, PartsError
from coin.models.minigpt_v2.parts import assemble_minigpt_v2, resize_pos_embed
from coin.models.minigpt_v2.wrapper import coin_to_native, native_to_coin

QUIET = lambda *a: None  # noqa: E731


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    return tiny.write_pieces(tmp_path_factory.mktemp("minigpt"))


def _load(pieces, **extra):
    return load_model(section("model", **tiny.model_section(pieces, **extra)), log=QUIET, progress=False)


@pytest.fixture(scope="module")
def vlm(pieces):
    return _load(pieces)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate([(64, 64), (80, 40), (40, 96), (64, 64)]):
        paths.append(str(root / f"{k}.png"))
        Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()).save(paths[-1])
    return paths


# ----------------------------------------------------------------------------- the pieces


def test_every_weight_comes_from_a_piece_and_the_released_lora_is_merged_at_its_alpha(pieces, vlm):
    from transformers import LlamaForCausalLM

    model = vlm.model
    vit = torch.load(pieces["vit"], weights_only=True)
    for key, t in model.visual_encoder.state_dict().items():
        want = vit[key] if key != "pos_embed" else resize_pos_embed(vit[key], tiny.IMAGE_SIZE // tiny.PATCH)
        assert torch.equal(t, want.float()), key
    assert len(model.visual_encoder.blocks) == tiny.VIT_DEPTH  # the file's last block dropped
    ckpt = torch.load(pieces["checkpoint"], weights_only=True)["model"]
    assert torch.equal(model.llama_proj.weight, ckpt["llama_proj.weight"])
    assert torch.equal(model.ln_vision.weight, torch.ones(tiny.VIT_WIDTH))  # fresh: not in the checkpoint
    assert torch.equal(model.ln_vision.bias, torch.zeros(tiny.VIT_WIDTH))
    lm = LlamaForCausalLM.from_pretrained(str(pieces["lm"])).state_dict()
    for key, t in model.llama_model.state_dict().items():
        m = key.split(".")
        if key.endswith(("q_proj.weight", "v_proj.weight")):
            a, b = (ckpt[tiny.lora_key(int(m[2]), m[4], h)] for h in "AB")
            torch.testing.assert_close(t, lm[key] + 16 / tiny.LORA_R * b @ a)
        else:
            assert torch.equal(t, lm[key]), key


def test_pos_embed_is_resized_bicubic_in_fp32_with_the_cls_row_kept():
    pos = torch.randn(1, 5, 3)
    out = resize_pos_embed(pos, 4)
    assert out.shape == (1, 17, 3) and torch.equal(out[:, :1], pos[:, :1])
    want = torch.nn.functional.interpolate(pos[:, 1:].reshape(1, 2, 2, 3).permute(0, 3, 1, 2), size=(4, 4),
                                           mode="bicubic", align_corners=False)
    torch.testing.assert_close(out[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 16, 3))
    assert resize_pos_embed(pos, 2) is pos


def test_both_peft_key_spellings_load_the_same_model_and_the_log_names_them(pieces, vlm, tmp_path):
    path = tiny.save_checkpoint(tmp_path / "default.pth", tiny.checkpoint_model(default=True))
    logs: list[str] = []
    model, _ = assemble_minigpt_v2(pieces["lm"], pieces["vit"], path, torch.float32, vit_depth=tiny.VIT_DEPTH,
                                   vit_heads=tiny.VIT_HEADS, image_size=tiny.IMAGE_SIZE, log=logs.append)
    assert any("keys *.lora_A.default.weight" in line and "dropped by design: blocks.2.*" in line for line in logs)
    for (k, a), b in zip(model.state_dict().items(), vlm.model.state_dict().values()):
        assert torch.equal(a, b), k


def _bad_checkpoints(tmp_path):
    good = tiny.checkpoint_model()
    key = tiny.lora_key(0, "q_proj", "B")
    cases = {
        "extra": ({**good, "llama_model.model.embed_tokens.weight": torch.zeros(2)}, "unexpected key "
                  "'llama_model.model.embed_tokens.weight'"),
        "shape": ({**good, "llama_proj.weight": torch.zeros(tiny.LM_WIDTH, 7)}, "'llama_proj.weight' has shape "
                  f"({tiny.LM_WIDTH}, 7), expected ({tiny.LM_WIDTH}, {4 * tiny.VIT_WIDTH})"),
        "unpaired": ({k: v for k, v in good.items() if k != key}, "layer 0 q_proj has lora_A without its pair"),
        "mixed": ({**good, tiny.lora_key(1, "q_proj", "A", True): torch.zeros(1)},
                  "mix both PEFT spellings"),
        "no-proj": ({k: v for k, v in good.items() if not k.startswith("llama_proj.bias")},
                    "missing key 'llama_proj.bias'"),
    }
    return {name: (tiny.save_checkpoint(tmp_path / f"{name}.pth", state), msg) for name, (state, msg) in cases.items()}


def test_a_wrong_key_or_shape_in_the_checkpoint_is_named_with_its_file(pieces, tmp_path):
    for name, (path, message) in _bad_checkpoints(tmp_path).items():
        with pytest.raises(PartsError) as err:
            assemble_minigpt_v2(pieces["lm"], pieces["vit"], path, torch.float32, vit_depth=tiny.VIT_DEPTH,
                                vit_heads=tiny.VIT_HEADS, image_size=tiny.IMAGE_SIZE, log=QUIET)
        assert str(path) in str(err.value) and message in str(err.value), name


def test_bad_files_are_refused_by_name(pieces, tmp_path):
    kw = dict(vit_depth=tiny.VIT_DEPTH, vit_heads=tiny.VIT_HEADS, image_size=tiny.IMAGE_SIZE, log=QUIET)
    torch.save(tiny.checkpoint_model(), tmp_path / "flat.pth")  # the model entry without its wrapper dict
    with pytest.raises(PartsError, match=r"flat.pth has no 'model' entry"):
        assemble_minigpt_v2(pieces["lm"], pieces["vit"], tmp_path / "flat.pth", torch.float32, **kw)
    torch.save({"model": {"x": Sample("a", "b", "c", "d")}}, tmp_path / "pickled.pth")
    with pytest.raises(PartsError, match=r"pickled.pth was refused by weights-only loading"):
        assemble_minigpt_v2(pieces["lm"], pieces["vit"], tmp_path / "pickled.pth", torch.float32, **kw)
    vit = tiny.vit_state()
    del vit["blocks.1.attn.q_bias"]
    torch.save({**vit, "blocks.0.attn.rel_pos_bias": torch.zeros(1)}, tmp_path / "vit.pth")
    with pytest.raises(PartsError) as err:
        assemble_minigpt_v2(pieces["lm"], tmp_path / "vit.pth", pieces["checkpoint"], torch.float32, **kw)
    assert "vit.pth" in str(err.value) and "unexpected key 'blocks.0.attn.rel_pos_bias'" in str(err.value)
    assert "missing key 'blocks.1.attn.q_bias'" in str(err.value)
    with pytest.raises(MissingPartError, match="absent.pth does not exist"):
        assemble_minigpt_v2(pieces["lm"], tmp_path / "absent.pth", pieces["checkpoint"], torch.float32, **kw)
    with pytest.raises(PartsError, match=r"has 3 blocks; model.vit_depth asks for 5"):
        assemble_minigpt_v2(pieces["lm"], pieces["vit"], pieces["checkpoint"], torch.float32,
                            **{**kw, "vit_depth": 5})


# ----------------------------------------------------------------------------- image and text


def test_each_lm_token_is_four_consecutive_patches_after_ln_vision_without_cls(vlm, images):
    model = vlm.model
    pixels = vlm.pixels([Sample("a", "t", images[1], "q")])
    assert pixels.shape == (1, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)  # resized to a square, not padded
    with torch.no_grad():
        tokens = torch.nn.functional.layer_norm(model.visual_encoder(pixels), (tiny.VIT_WIDTH,))[0, 1:]
        want = torch.stack([model.llama_proj(torch.cat(list(tokens[4 * j : 4 * j + 4]))) for j in range(4)])
        torch.testing.assert_close(model.encode_images(pixels)[0], want)
    assert vlm.num_image_tokens == 4


def test_the_prompt_is_minigpt_v2_s_and_labels_cover_the_answer_only(vlm, images):
    s = Sample("a", "VQAv2", images[0], "What is it?", "a red circle")
    batch = vlm.train_batch([s])
    ids, labels, image = batch["input_ids"][0], batch["labels"][0], batch["image_mask"][0]
    tok = vlm.tokenizer
    assert ids[0] == tok.bos_token_id and image.sum() == 4
    first = int(image.nonzero()[0])
    assert tok.decode(ids[1:first]) == "[INST] <Img>"
    prompt_end = int((labels != -100).nonzero()[0])
    assert tok.decode(ids[first + 4 : prompt_end]) == "</Img> What is it? [/INST]"
    assert tok.decode(labels[prompt_end:]) == "a red circle</s>"
    assert (labels[:prompt_end] == -100).all()


def test_box_conversions_between_coin_and_minigpt_v2_grids():
    # a 200 x 100 image sits in a 200 x 200 square, 50 pixels down
    assert coin_to_native("[0.10, 0.30, 0.60, 0.70]", 200, 100) == "{<10><10><60><90>}"
    assert native_to_coin("{<10><10><60><90>}", 200, 100) == "[0.10, 0.30, 0.60, 0.70]"
    assert coin_to_native("[0.25, 0.00, 0.75, 1.00]", 100, 200) == "{<0><0><100><100>}"
    assert native_to_coin("the box {<0><0><100><100>}", 100, 200) == "[0.25, 0.00, 0.75, 1.00]"
    assert coin_to_native("no box", 10, 10) is None and native_to_coin("{<1><2>}", 10, 10) is None
    for box in ("[0.12, 0.34, 0.56, 0.78]", "[0.00, 0.40, 0.99, 0.61]"):  # a round trip within the 0-100 grid
        back = native_to_coin(coin_to_native(box, 120, 80), 120, 80)
        assert all(abs(a - b) <= 0.0051 for a, b in zip(json.loads(back), json.loads(box))), back


def test_the_native_prompt_adds_task_identifiers_and_converts_boxes_both_ways(pieces, images):
    native = _load(pieces, prompt="native")
    tok = native.tokenizer
    ground = Sample("g", "Grounding", images[1], "Where is it?", "[0.10, 0.30, 0.60, 0.70]")
    vqa = Sample("v", "VQAv2", images[1], "What is it?", "red")
    batch = native.train_batch([ground, vqa])
    text = [tok.decode(row[row != tok.eos_token_id]) for row in batch["input_ids"]]
    assert "</Img> [refer] Where is it? [/INST]" in text[0] and "</Img> [vqa] What is it? [/INST]" in text[1]
    # image 1 is 80 x 40: padded to 80 x 80, 20 pixels down
    assert tok.decode(batch["labels"][0][batch["labels"][0] != -100]) == "{<10><10><60><90>}</s>"
    assert native.output_text(ground, "{<10><0><60><90>}") == "[0.10, 0.25, 0.60, 0.70]"
    assert native.output_text(vqa, "{<10><0><60><90>}") == "{<10><0><60><90>}"  # not a box task: as it is


# ----------------------------------------------------------------------------- generation, run, resume


def test_batched_generation_equals_one_by_one(vlm, images):
    prompts = ["x", "What is the object in the image?\nAnswer the question using a single word or phrase.",
               "Describe the image. " * 10, "Is there a red circle?"]
    samples = [Sample(f"s{k}", "VQAv2", images[k], p) for k, p in enumerate(prompts)]
    single = [vlm.generate([s], max_new_tokens=8)[0] for s in samples]
    assert vlm.generate(samples, max_new_tokens=8) == single
    assert vlm.generate(samples[::-1], max_new_tokens=8) == single[::-1]
    assert len(set(single)) > 1


def test_lora_lands_on_the_lm_s_q_and_v_only_and_llama_proj_trains(pieces, images):
    from coin.adapters import attach_adapter

    fresh = _load(pieces)
    attach_adapter(fresh, section("adapter", r=2, alpha=4))
    trainable = {n for n, p in fresh.model.named_parameters() if p.requires_grad}
    lora = {n.split(".lora_")[0] for n in trainable if ".lora_" in n}
    assert lora == {f"base_model.model.llama_model.model.layers.{i}.self_attn.{p}"
                    for i in range(tiny.LM_LAYERS) for p in ("q_proj", "v_proj")}
    assert trainable - {n for n in trainable if ".lora_" in n} == {
        "base_model.model.llama_proj.modules_to_save.default.weight",
        "base_model.model.llama_proj.modules_to_save.default.bias"}


def test_save_base_writes_the_three_pieces_that_load_back_the_same_model(vlm, images, tmp_path):
    vlm.save_base(tmp_path / "base")
    again = load_model(section("model", **tiny.model_section(
        {"lm": tmp_path / "base" / "llama", "vit": tmp_path / "base" / "eva_vit_g.safetensors",
         "checkpoint": tmp_path / "base" / "minigpt_v2.safetensors"})), log=QUIET)
    batch = vlm.train_batch([Sample("a", "VQAv2", images[0], "What is it?", "red")])
    with torch.no_grad():
        torch.testing.assert_close(again.model(**batch).logits, vlm.model(**batch).logits)


@pytest.mark.slow
def test_run_two_stages_then_resume_gives_the_same_matrix(pieces, micro_config, tmp_path):
    from coin.engine.run import run

    cfg = micro_config
    cfg["model"] = tiny.model_section(pieces)
    cfg["train"]["lr"] = 3e-2  # enough for the adapter to change the answers, so reloading it is tested
    cfg["data"]["synth"]["n_train"] = 16  # two steps a stage
    out = tmp_path / "run"
    first = run(from_dict(cfg), out, progress=False, log=QUIET)
    assert first["matrix"][1][0] is not None and first["matrix"][1][1] is not None
    assert first["cost"]["trainable_params"] > 0
    # Grounding's paper column is MiniGPT-v2's own script (issue 28.11), in the card and in the scores
    assert first["protocol_card"]["Grounding"]["paper"]["protocol"] == "minigpt"
    scores = json.loads((out / "stages" / "02-Grounding" / "scores.json").read_text())
    assert scores["Grounding"]["protocols"]["paper"]["protocol"] == "minigpt"
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


# ----------------------------------------------------------------------------- the shipped configs


def dry_run_with_every_file(name: str, root, monkeypatch, capsys) -> tuple[object, str]:
    """``coin run --dry-run`` of ``configs/coin/<name>`` from ``root`` with stand-ins for every file it names."""
    from test_real_configs import REPO, _fake_inputs

    from coin.cli import main
    from coin.config_load import load_config
    from coin.models import BACKBONES

    monkeypatch.chdir(root)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    path = REPO / "configs" / "coin" / name
    cfg = load_config(path)
    _fake_inputs(root, cfg)
    for w in BACKBONES.get(cfg.model.name).weights(cfg.model):
        (root / w.path).parent.mkdir(parents=True, exist_ok=True)
        if w.kind == "folder":
            (root / w.path).mkdir(exist_ok=True)
        else:
            (root / w.path).write_bytes(b"stand-in")
    code = main(["run", "--config", str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "MISSING" not in out, out
    return cfg, out


def test_the_shipped_config_has_coin_s_minigpt_v2_recipe_and_passes_its_dry_run(tmp_path, monkeypatch, capsys):
    cfg, out = dry_run_with_every_file("minigpt-v2/lora.yaml", tmp_path, monkeypatch, capsys)
    assert (cfg.model.name, cfg.model.options.prompt, cfg.model.options.released_lora_alpha) == ("minigpt-v2", "coin",
                                                                                                  16.0)
    a, t = cfg.adapter, cfg.train
    assert (a.type, a.r, a.alpha, a.dropout, a.train_projector) == ("lora", 64, 256, 0.05, True)
    assert (t.lr, t.weight_decay, t.warmup_ratio, t.epochs, t.batch_size * t.grad_accum * 8) == (1e-5, 0.05, 0.03, 1,
                                                                                                 128)
    assert set(cfg.eval.max_new_tokens.values()) == {100} and len(cfg.eval.max_new_tokens) == 8
    assert "model.checkpoint_path:" in out and "minigpt-v2 (prompt coin" in out
