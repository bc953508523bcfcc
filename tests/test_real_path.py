"""The real-model path of LLaVA-1.5 (issues #13.6 and #22), on a tiny llava-hf folder saved to disk.

The conversation format, sequence truncation, fp32 master weights under bf16, the frozen tower
without autograd, the byte-bounded image cache and LLaVA's pad colour, each checked through the
loaders ``coin run`` uses.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import tinyhf
from coin.adapters import attach_adapter
from coin.config_load import section
from coin.models import load_model
from coin.models.conversation import VICUNA_V1_SYSTEM
from coin.data.sample import Sample
from coin.models.llava.wrapper import LlavaVLM

N_IMAGE = 16  # 64x64 images, 16x16 patches


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tinyhf.build_llava(tmp_path_factory.mktemp("llava") / "llava")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate([(64, 64), (64, 40), (48, 64)]):
        path = root / f"{k}.png"
        Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()).save(path)
        paths.append(str(path))
    return paths


def _two_turns(image: str) -> Sample:
    return Sample("m", "t", image, "What colour is it?", "red", turns=(("And the shape?", "a circle"),))


def _runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The ids of each contiguous labelled run."""
    runs, current = [], []
    for i, y in zip(ids, labels):
        if y != -100:
            assert y == i, "a label is the input token itself"
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


# ----------------------------------------------------------------------------- #13.6: vicuna_v1


def test_llava_uses_vicuna_v1_in_training_and_evaluation(folder, images):
    """A snapshot of the exact text and label mask of a two-turn record (LLaVA's conv_vicuna_v1)."""
    vlm = load_model(section("model", name="llava", path=str(folder)))
    tok = vlm.tokenizer
    image = "<image>" * N_IMAGE
    assert vlm.prompt_text("What colour is it?") == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        f"detailed, and polite answers to the user's questions. USER: {image}\nWhat colour is it? ASSISTANT:")
    b = vlm.train_batch([_two_turns(images[0])])
    ids, labels = b["input_ids"][0].tolist(), b["labels"][0].tolist()
    assert tok.decode(ids) == (f"<s>{VICUNA_V1_SYSTEM} USER: {image}\nWhat colour is it? ASSISTANT: red</s>"
                               "USER: And the shape? ASSISTANT: a circle</s>")
    # labels: each assistant turn with its </s>, nothing else (not the system line, the image, USER: ...)
    assert [tok.decode(r) for r in _runs(ids, labels)] == [" red</s>", " a circle</s>"]
    assert labels[-1] == tok.eos_token_id
    gen = vlm.generation_batch([_two_turns(images[0])])["input_ids"][0].tolist()
    assert ids[: len(gen)] == gen, "evaluation prompts are the training prompts"


def test_the_tiny_model_keeps_its_plain_template(images):
    """The built-in tiny model was pretrained without a system line; its text does not change."""
    import tinyvlm

    vlm = tinyvlm.tiny_vlm()
    assert vlm.conversation.name == "plain"
    assert vlm.prompt_text("q") == "USER: " + "<image>" * N_IMAGE + "\nq ASSISTANT:"
    b = vlm.train_batch([_two_turns(images[0])])
    assert vlm.tokenizer.decode(b["input_ids"][0].tolist()).endswith(
        "\nWhat colour is it? ASSISTANT: red</s>USER: And the shape? ASSISTANT: a circle</s>")
    assert vlm.max_length is None


# ----------------------------------------------------------------------------- #22.8: truncation


def test_long_sequences_are_cut_to_max_length_and_counted(folder, images):
    vlm = load_model(section("model", name="llava", path=str(folder)))
    assert vlm.max_length == 2048, "LLaVA-1.5's model_max_length"
    long = Sample("long", "t", images[0], "What colour is it?", "red " * 40, turns=(("Again?", "blue " * 40),))
    short = Sample("short", "t", images[1], "What colour is it?", "red")
    full = vlm.train_batch([long, short])
    n_long = int(full["attention_mask"][0].sum())
    prompt = len(vlm.generation_batch([long])["input_ids"][0])
    vlm.max_length = prompt + 5
    b = vlm.train_batch([long, short])
    assert b["input_ids"].shape[1] == prompt + 5 < n_long
    assert torch.equal(b["input_ids"][0], full["input_ids"][0, : prompt + 5])  # cut at the end, as LLaVA does
    assert torch.equal(b["labels"][0], full["labels"][0, : prompt + 5])
    assert vlm.truncated == {"long"}
    assert vlm.truncated_ids([short, long, short]) == ["long"]  # what the stage log counts
    vlm.max_length = prompt - 1  # a cut into the image tokens would not match the image's features
    with pytest.raises(ValueError, match=r"record long .*0\.png.*model\.max_length"):
        vlm.train_batch([long])


def test_the_stage_log_counts_truncated_samples(folder, images):
    from coin.config import TrainConfig
    from coin.engine.train import train_stage
    from coin.methods import StageContext

    samples = [Sample(f"s{k}", "t", images[k % 3], "What colour is it?", "red " * (1 + 20 * (k % 2)))
               for k in range(4)]
    probe = load_model(section("model", name="llava", path=str(folder)))
    limit = int(probe.train_batch(samples[:1])["attention_mask"].sum()) + 2  # room for "red </s>" only
    vlm = load_model(section("model", name="llava", path=str(folder), max_length=limit))  # model.max_length
    attach_adapter(vlm, section("adapter", r=2, alpha=4))
    assert vlm.truncated_ids(samples) == ["s1", "s3"]
    lines: list[str] = []
    ctx = StageContext(vlm=vlm, task="t", stage=0, tasks=["t"])
    stats = train_stage(ctx, samples, TrainConfig(batch_size=2, lr=1e-3), [], seed=0, progress=False,
                        log=lines.append)
    assert stats.truncated == 2
    assert any(f"2 of 4 training samples are longer than model.max_length ({limit} tokens)" in line for line in lines)


# ----------------------------------------------------------------------------- #22.5: fp32 trainables


def test_trainable_parameters_are_fp32_and_a_small_step_moves_a_bf16_projector(folder, images):
    vlm = load_model(section("model", name="llava", path=str(folder), dtype="bf16"))
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    named = {n: p for n, p in vlm.model.named_parameters() if p.requires_grad}
    assert named and all(p.dtype == torch.float32 for p in named.values()), \
        {n: p.dtype for n, p in named.items() if p.dtype != torch.float32}
    assert any(p.dtype == torch.bfloat16 for p in vlm.model.parameters()), "frozen weights stay bf16"
    projector = {n: p.detach().clone() for n, p in named.items() if "multi_modal_projector" in n}
    assert projector
    opt = torch.optim.AdamW(named.values(), lr=2e-5, weight_decay=0.0)  # LLaVA's projector lr
    samples = [Sample(str(k), "t", images[k], "What colour is it?", "red") for k in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = vlm.model(**vlm.train_batch(samples)).loss
    loss.backward()
    opt.step()
    moved = torch.cat([(named[n].detach() != p).flatten() for n, p in projector.items()]).float().mean()
    assert moved > 0.9, f"only {moved:.0%} of the projector's entries moved"
    assert len(vlm.generate(samples, max_new_tokens=2)) == 3  # without autocast: inputs cast at the projector


def test_an_fp32_model_is_left_as_it_was(folder):
    vlm = load_model(section("model", name="llava", path=str(folder), dtype="fp32"))
    attach_adapter(vlm, section("adapter", r=2, alpha=4))
    projector = vlm.model.get_submodule("base_model.model.model.multi_modal_projector")
    assert not projector._forward_pre_hooks and not projector._forward_hooks


# ----------------------------------------------------------------------------- #22.9: the frozen tower


def _tower_hooks_off(tower) -> None:
    from coin.models.modes import _enter_no_grad, _leave_no_grad

    for m in tower.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks):
            for key in [k for k, f in hooks.items() if f in (_enter_no_grad, _leave_no_grad)]:
                del hooks[key]


def test_the_frozen_vision_tower_builds_no_graph(folder, images):
    """With gradient checkpointing, enable_input_require_grads hooks the tower's patch embedding too."""
    vlm = load_model(section("model", name="llava", path=str(folder), gradient_checkpointing=True))
    torch.manual_seed(0)
    attach_adapter(vlm, section("adapter", r=4, alpha=8))
    tower = vlm.model.get_submodule("base_model.model.model.vision_tower")
    seen: list[bool] = []
    tower.register_forward_hook(lambda m, a, out: seen.append(out.last_hidden_state.requires_grad))
    samples = [Sample(str(k), "t", images[k], "What colour is it?", "red") for k in range(3)]
    batch = vlm.train_batch(samples)
    vlm.model.train()

    def grads() -> dict[str, torch.Tensor]:
        vlm.model.zero_grad(set_to_none=True)
        vlm.model(**batch).loss.backward()
        return {n: p.grad.clone() for n, p in vlm.model.named_parameters() if p.requires_grad}

    ours = grads()
    assert seen == [False], "the frozen tower ran with autograd"
    assert all(g.abs().sum() > 0 for n, g in ours.items() if "multi_modal_projector" in n)
    _tower_hooks_off(tower)
    theirs = grads()
    assert seen[-1] is True, "without the hooks the tower's activations would be kept"
    assert ours.keys() == theirs.keys()
    for n in ours:
        torch.testing.assert_close(ours[n], theirs[n], rtol=1e-5, atol=1e-7, msg=n)


# ----------------------------------------------------------------------------- #22.7 and #22.10: images


def test_the_image_cache_is_bounded_by_bytes_and_stores_the_models_dtype(folder, images, tmp_path):
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16)
    vlm = LlavaVLM(model, LlavaProcessor.from_pretrained(folder), image_cache_mb=1)
    paths = []
    for k in range(50):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.new("RGB", (64, 64), (k * 5, 0, 0)).save(paths[-1])
    px = vlm.pixels([Sample(str(k), "t", p, "q") for k, p in enumerate(paths)])
    cache = vlm._pixel_cache
    per_image = 3 * 64 * 64 * 2  # bf16
    assert px.dtype == torch.bfloat16
    assert len(cache) == 2**20 // per_image < 50 and cache.bytes <= 2**20
    again = vlm.pixels([Sample("0", "t", paths[0], "q"), Sample("49", "t", paths[49], "q")])
    assert torch.equal(again, px[[0, 49]]), "cached and fresh images are the same"


def test_pad_colour_is_llavas_truncated_mean():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from coin.models.images import expand_to_square, pad_colour

    clip = CLIPImageProcessorPil()  # OpenAI CLIP's mean (0.48145466, 0.4578275, 0.40821073)
    assert pad_colour(clip) == (122, 116, 104)  # LLaVA's int(255 * mean); rounding gave (123, 117, 104)
    square = expand_to_square(Image.new("RGB", (10, 4), (0, 0, 0)), clip)
    assert square.getpixel((5, 0)) == (122, 116, 104)


def test_bench_gpu_measures_the_frozen_tower_side_by_side():
    """``bench_gpu.py --frozen-tower`` on the shrunken architecture: both runs train and are reported."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_gpu

    args = bench_gpu.parse_args(["--small", "--device", "cpu", "--rank", "4", "--dropout", "0", "--batch-size", "1",
                                 "--text-tokens", "8", "--answer-tokens", "2", "--steps", "1", "--warmup", "0"])
    line = bench_gpu.bench_frozen_tower(bench_gpu.llava_config(small=True), args, torch.device("cpu"), torch.float32)
    assert line.startswith("frozen tower (lora r4): without autograd ") and "with autograd through it" in line
