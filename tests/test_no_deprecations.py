"""coin's own calls into transformers raise no deprecation warning (issue #34).

transformers 5.x renamed ``past_key_values`` to ``cache`` (forward and ``generate``; the old name is
removed in 5.40 for model forwards) and ``gradient_checkpointing_enable`` / ``is_gradient_checkpointing``
to ``activation_checkpointing_*``, warning with a FutureWarning on every use of an old name. Here a
tiny LLaVA is loaded with activation checkpointing, given LoRA, trained a step and decoded (plain
batched greedy, shared image prefixes, ``model.generate``), and a tiny Qwen2-VL generates with both
KV caches, all with FutureWarning an error (and DeprecationWarning from transformers or coin).

PEFT's own probe of ``is_gradient_checkpointing`` inside ``get_peft_model`` (peft 0.17-0.21) is PEFT's
call, not coin's; coin silences that one message around that one call (``coin.adapters.base.peft_model``),
so a run prints nothing, and the check here covers building the LoRA too.
"""

from __future__ import annotations

import contextlib
import warnings
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import tinyhf
from coin.config_load import section
from coin.data.sample import Sample
from coin.models import load_model
from coin.models.modes import activation_checkpointing_on

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def strict():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.filterwarnings("error", category=DeprecationWarning, module=r"(transformers|coin)(\.|$)")
        yield


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("deprecations")
    return {"qwen": tinyhf.build_qwen2_vl(root / "qwen2-vl"), "llava": tinyhf.build_llava(root / "llava")}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate([(64, 64), (64, 32), (96, 64)]):
        pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        paths.append(str(root / f"{k}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _questions(images):
    """Several questions on each image (so shared-prefix decoding has groups) and one text-only."""
    prompts = ["What is the object in the image?", "Colour?", "Describe the image. " * 3, "Shape?", "x"]
    rows = [Sample(f"q{k}", "t", images[k % 2], p) for k, p in enumerate(prompts)]
    return rows + [Sample("text", "t", None, "Is the sky blue?")]


def test_llava_load_train_step_and_decoding_raise_no_deprecation(folders, images):
    from coin.adapters.lora import LoRA
    from coin.engine.lm_loss import forward_with_loss

    with strict():
        vlm = load_model(section("model", name="llava", path=str(folders["llava"]), gradient_checkpointing=True))
    assert activation_checkpointing_on(vlm.model)
    with strict():  # PEFT's own probe of the deprecated property is silenced for its one call (adapters.base.peft_model)
        vlm.model = LoRA.build(vlm, SimpleNamespace(r=2, alpha=4, dropout=0.0, train_projector=True))
    train = [Sample(f"t{k}", "t", images[k], f"Question {k}?", answer=f"answer {k}") for k in range(3)]
    samples = _questions(images)
    with strict():
        vlm.model.train()
        out = forward_with_loss(vlm.model, vlm.train_batch(train))
        out.loss.backward()
        assert torch.isfinite(out.loss)
        vlm.model.eval()
        plain = vlm.generate(samples, 6)  # greedy_decode, preallocated cache
        vlm.share_prefix = True
        try:
            assert vlm.generate(samples, 6) == plain  # shared_prefix_decode
        finally:
            vlm.share_prefix = False
        vlm.decoding = "hf"
        try:
            assert vlm.generate(samples, 6) == plain  # model.generate
        finally:
            vlm.decoding = "coin"


def test_qwen2_vl_generation_raises_no_deprecation(folders, images):
    samples = _questions(images)
    with strict():
        vlm = load_model(section("model", name="qwen2-vl", path=str(folders["qwen"])))
        vlm.model.eval()
        ours = vlm.generate(samples, 6)  # generate(cache=<preallocated>)
        vlm.kv_cache = "dynamic"
        assert vlm.generate(samples, 6) == ours  # generate building its own cache


def test_coin_passes_the_cache_by_the_name_the_installed_transformers_takes():
    import inspect

    from transformers import LlavaForConditionalGeneration

    from coin.models.kv_cache import cache_keyword, cache_kwargs

    named = inspect.signature(LlavaForConditionalGeneration.forward).parameters
    expected = "cache" if "cache" in named else "past_key_values"  # "cache" on 5.25 (tested)
    assert cache_keyword() == expected and list(cache_kwargs(None)) == [expected]


def test_a_saved_moelora_adapter_reloads_without_peft_s_deprecated_probe(tmp_path):
    """Resuming a MoELoRA run reloads its adapter through ``PeftModel.from_pretrained``, which probes the
    deprecated ``is_gradient_checkpointing`` (PEFT's call); coin silences that one message there too."""
    from coin.adapters import attach_adapter
    from coin.adapters.moelora_layer import load_moelora
    from tinyvlm import tiny_vlm

    vlm = tiny_vlm(seed=0)
    attach_adapter(vlm, section("adapter", type="moelora", r=8, alpha=16.0, experts=2))
    vlm.model.save_pretrained(tmp_path / "adapter")
    with strict():
        reloaded = load_moelora(tiny_vlm(seed=0).model, tmp_path / "adapter")
    assert any("lora_gate" in name for name, _ in reloaded.named_parameters())
