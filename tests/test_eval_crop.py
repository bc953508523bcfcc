"""eval.image_mode: test images padded (coin's default), centre-cropped as the original did for ScienceQA,
ImageNet, Grounding and VQAv2 (``paper``), or all cropped; training always pads; the card says which."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from coin.config import ConfigError
from coin.config_load import from_dict
from coin.data.sample import Sample
from tinyvlm import MICRO, tiny_vlm

W, H = 40, 24  # a non-square image: crop and pad differ


@pytest.fixture(scope="module")
def vlm():
    return tiny_vlm(seed=0)


@pytest.fixture
def wide(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def _normalised(img: Image.Image, ip) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(ip.image_mean, dtype=np.float32)) / np.asarray(ip.image_std, dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1))


def _pixels(vlm, path, task, mode, evaluating=True):
    vlm.eval_image_mode = mode
    vlm._pixel_cache._items.clear()
    vlm._pixel_cache.bytes = 0
    return vlm.pixels([Sample(id="q", task=task, image=str(path), prompt="What is it?")], evaluating)[0].float()


def test_crop_mode_gives_clip_s_shortest_side_resize_and_centre_crop(vlm, wide):
    """By hand with PIL: shortest side to the processor's size (bicubic), then the centre square."""
    s = MICRO.image_size
    img = Image.open(wide).convert("RGB").resize((int(s * W / H), s), Image.BICUBIC)
    left = (img.width - s) // 2
    want = _normalised(img.crop((left, 0, left + s, s)), vlm.processor.image_processor)
    got = _pixels(vlm, wide, "GQA", "crop")
    assert got.shape == want.shape == (3, s, s)
    assert torch.allclose(got, want, atol=1e-4)
    # pad mode: the mean-colour square, then the processor, as before
    ip = vlm.processor.image_processor
    side = max(W, H)
    square = Image.new("RGB", (side, side), tuple(int(255 * m) for m in ip.image_mean))
    square.paste(Image.open(wide).convert("RGB"), (0, (side - H) // 2))
    padded = _normalised(square.resize((s, s), Image.BICUBIC), ip)
    assert torch.allclose(_pixels(vlm, wide, "GQA", "pad"), padded, atol=1e-4)
    assert not torch.allclose(got, padded, atol=1e-2)


def test_paper_mode_crops_only_the_original_s_four_tasks_and_training_always_pads(vlm, wide):
    pad = _pixels(vlm, wide, "GQA", "pad")
    crop = _pixels(vlm, wide, "GQA", "crop")
    for task in ("ScienceQA", "ImageNet", "Grounding", "VQAv2"):
        assert torch.equal(_pixels(vlm, wide, task, "paper"), crop), task
        assert torch.equal(_pixels(vlm, wide, task, "paper", evaluating=False), pad), task  # training
    for task in ("TextVQA", "GQA", "VizWiz", "OCR-VQA"):
        assert torch.equal(_pixels(vlm, wide, task, "paper"), pad), task
    assert torch.equal(_pixels(vlm, wide, "GQA", "crop", evaluating=False), pad)
    # one image under both steps: two cache entries, never the other's pixels
    vlm.eval_image_mode = "paper"
    a = Sample(id="a", task="ImageNet", image=str(wide), prompt="q")
    b = Sample(id="b", task="GQA", image=str(wide), prompt="q")
    both = vlm.pixels([a, b], evaluating=True).float()
    assert torch.equal(both[0], crop) and torch.equal(both[1], pad)


def test_the_run_crops_per_task_and_the_card_names_the_mode(micro_config, tmp_path, monkeypatch):
    """Through the engine: paper mode on ImageNet (cropped) and GQA (padded); the card says so per task."""
    from coin.engine.run import run
    from coin.models.llava import wrapper as vlm_module

    seen = []
    real_step = vlm_module.LlavaVLM.image_step

    def spy(self, s, evaluating=False):
        step = real_step(self, s, evaluating)
        seen.append((s.task, evaluating, step))
        return step

    crops = []
    real_crop = vlm_module.centre_crop
    monkeypatch.setattr(vlm_module.LlavaVLM, "image_step", spy)
    monkeypatch.setattr(vlm_module, "centre_crop", lambda img, ip: crops.append(img.size) or real_crop(img, ip))
    micro_config["tasks"]["order"] = ["ImageNet", "GQA"]
    micro_config["eval"]["image_mode"] = "paper"
    result = run(from_dict(micro_config), tmp_path / "run", progress=False, log=lambda *a: None)
    evaluated = {(t, step) for t, ev, step in seen if ev}
    assert evaluated == {("ImageNet", "crop"), ("GQA", "pad")}
    assert {step for _, ev, step in seen if not ev} == {"pad"}  # training pads
    assert crops  # the crop itself ran
    card = result["protocol_card"]
    assert card["ImageNet"]["paper"]["image"] == card["ImageNet"]["strict"]["image"] == "centre crop (the original's)"
    assert card["GQA"]["paper"]["image"] == "pad to square"
    assert not any("image_mode" in d for t in card for c in card[t].values() for d in c["deviations"])


def test_the_card_lists_padding_as_a_difference_with_the_option():
    from coin.tasks.protocol_sets import card_rows, protocol_card

    card = protocol_card(["ScienceQA", "TextVQA"], None, "pad")
    assert card["ScienceQA"]["paper"]["image"] == "pad to square"
    assert any("eval.image_mode: paper" in d for d in card["ScienceQA"]["paper"]["deviations"])
    assert card["TextVQA"]["paper"]["image"] == "pad to square"
    assert not any("image_mode" in d for d in card["TextVQA"]["paper"]["deviations"])
    crop = protocol_card(["TextVQA"], None, "crop")["TextVQA"]["paper"]
    assert crop["image"] == "centre crop" and any("eval.image_mode: paper" in d for d in crop["deviations"])
    rows = card_rows(card)
    assert rows[0][7] == "pad to square" and "eval.image_mode: paper" in rows[0][8]


def test_invalid_values_are_refused_naming_the_key():
    assert from_dict({}).eval.image_mode == "pad"
    for mode in ("pad", "paper", "crop"):
        assert from_dict({"eval": {"image_mode": mode}}).eval.image_mode == mode
    with pytest.raises(ConfigError, match=r"eval\.image_mode must be one of pad, paper, crop, got 'square'"):
        from_dict({"eval": {"image_mode": "square"}})
    with pytest.raises(ConfigError, match=r"eval\.image_mode: 'paper' applies to the LLaVA backbones"):
        from_dict({"model": {"name": "qwen2-vl", "path": "Qwen/Qwen2-VL-7B-Instruct"}, "eval": {"image_mode": "paper"}})


@pytest.mark.parametrize("mode,expect", [
    ("paper", "test images (eval.image_mode paper): centre-cropped: ScienceQA, ImageNet, Grounding, VQAv2; "
              "padded to a square: TextVQA, GQA, VizWiz, OCR-VQA"),
    ("pad", "test images (eval.image_mode pad): padded to a square: ScienceQA, TextVQA, ImageNet, GQA, VizWiz, "
            "Grounding, VQAv2, OCR-VQA"),
])
def test_the_dry_run_says_how_each_task_s_test_images_are_prepared(mode, expect, capsys):
    from coin.cli import main

    assert main(["run", "--dry-run", "--set", f"eval.image_mode={mode}"]) in (0, None)
    assert expect in capsys.readouterr().out
