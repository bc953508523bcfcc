"""What every registered backbone and adapter promises, checked over the registries.

A new built-in backbone or adapter gets this whole battery by being registered; a backbone
also needs a row in ``OFFLINE`` saying how to build a tiny instance of it without a download
(a test fails until it has one). The engine relies on each promise: ``VLM``'s members, the
capabilities it asks with ``isinstance``, and a fresh adapter that changes no output (a stage
that trains nothing reuses the answers of the weights before it).
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import tinyhf
from conftest import MICRO
from coin.adapters import ADAPTERS, Adapter, attach_adapter, describe, trainable_parameters
from coin.config import AdapterConfig, ModelConfig
from coin.config_load import from_dict, section
from coin.data.sample import Sample
from coin.models import BACKBONES, Backbone, load_model
from coin.models.backbone import VLM, CachesVision, CountsTruncation, SharesPrefix, missing_members
from coin.options import describe as option_docs
from coin.options import flat_dict

COIN = Path(__file__).resolve().parent.parent / "coin"
QUIET = lambda *a: None  # noqa: E731


def _builtin(registry) -> list[str]:
    """The entries coin itself registers (a plugin loaded by another test is not coin's to check)."""
    return [n for n in registry.names() if registry.get(n).__module__.startswith("coin.")]


def _own_keys(section_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(section_cls)} - {"options"}


# ----------------------------------------------------------------------------- declarations


@pytest.mark.parametrize("registry,base,section_cls", [(BACKBONES, Backbone, ModelConfig),
                                                       (ADAPTERS, Adapter, AdapterConfig)],
                         ids=["backbones", "adapters"])
def test_every_entry_declares_documented_options_and_a_doc(registry, base, section_cls):
    for name in _builtin(registry):
        entry = registry.get(name)
        assert issubclass(entry, base), name
        assert registry.doc(name), f"{registry.kind} {name!r} needs a docstring (its line in coin ls)"
        options = registry.options_of(name)
        assert dataclasses.is_dataclass(options), f"{registry.kind} {name!r}: Options must be a dataclass"
        options()  # every option has a default: a config that leaves it out still builds
        undocumented = [d.name for d in option_docs(options) if not d.doc]
        assert not undocumented, f"{registry.kind} {name!r}: options without a comment: {undocumented}"
        # an entry's own keys sit beside the section's common ones in the YAML: they may not collide
        assert not {f.name for f in dataclasses.fields(options)} & _own_keys(section_cls), name


def test_no_backbone_or_adapter_is_named_in_the_engine_methods_reports_or_cli():
    """The layers above the registries ask an entry; they never compare a name."""
    names = set(_builtin(BACKBONES)) | set(_builtin(ADAPTERS))
    found = []
    for folder in ("engine", "methods", "report", "cli"):
        for path in sorted((COIN / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.relative_to(COIN.parent)}:{node.lineno} {node.value!r}")
    assert not found, found


def test_registries_and_the_plan_load_no_deep_learning_library():
    """Validating a config, listing entries and planning a run import neither torch nor PEFT."""
    code = ("import sys, coin.adapters, coin.models, coin.adapters.moelora, coin.engine.plan\n"
            "print([m for m in ('torch', 'peft', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- backbones, loaded offline


def _tiny(tmp: Path) -> dict:
    return {"name": "tiny", **MICRO["model"]}


def _llava(tmp: Path) -> dict:
    return {"name": "llava", "path": str(tinyhf.build_llava(tmp / "llava"))}


def _qwen2_vl(tmp: Path) -> dict:
    return {"name": "qwen2-vl", "path": str(tinyhf.build_qwen2_vl(tmp / "qwen2-vl"))}


def _hf(tmp: Path) -> dict:
    return {"name": "hf", "path": str(tinyhf.build_qwen2_vl(tmp / "qwen2-vl"))}


def _llava_pretrain(tmp: Path) -> dict:
    from test_llava_parts import write_parts

    parts = write_parts(tmp)
    return {"name": "llava-pretrain", "lm_path": str(parts["lm"]), "vision_path": str(parts["vision"]),
            "projector_path": str(parts["projector"]), "dtype": "fp32"}


def _minigpt_v2(tmp: Path) -> dict:
    import tinyminigpt

    return tinyminigpt.model_section(tinyminigpt.write_pieces(tmp / "minigpt-v2"))


def _qwen_vl_chat(tmp: Path) -> dict:
    import tinyqwenvl

    return tinyqwenvl.model_section(tinyqwenvl.build(tmp / "qwen-vl-chat"))


# name -> (the model section of a tiny instance, the optional capabilities its wrapper has)
LLAVA_CAPS = {SharesPrefix, CachesVision, CountsTruncation}
OFFLINE = {"tiny": (_tiny, LLAVA_CAPS), "llava": (_llava, LLAVA_CAPS), "llava-pretrain": (_llava_pretrain, LLAVA_CAPS),
           "qwen2-vl": (_qwen2_vl, set()), "hf": (_hf, set()), "minigpt-v2": (_minigpt_v2, {CountsTruncation}),
           "qwen-vl-chat": (_qwen_vl_chat, {CountsTruncation})}


def test_every_built_in_backbone_can_be_built_offline_here():
    assert sorted(OFFLINE) == sorted(_builtin(BACKBONES)), "add a row to OFFLINE for the new backbone"


def _samples(root: Path) -> list[Sample]:
    out = []
    for k, colour in enumerate(["red", "blue"]):
        path = root / f"{colour}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        out.append(Sample(f"s{k}", "VQAv2", str(path), "What colour is the picture?", colour))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFLINE))
def test_a_loaded_backbone_keeps_the_vlm_contract(name, tmp_path):
    build, caps = OFFLINE[name]
    vlm = load_model(section("model", **build(tmp_path)), log=QUIET, progress=False)
    assert isinstance(vlm, VLM) and missing_members(vlm) == []
    assert {c for c in (SharesPrefix, CachesVision, CountsTruncation) if isinstance(vlm, c)} == caps
    samples = _samples(tmp_path)
    batch = vlm.train_batch(samples)
    assert (batch["labels"] != -100).any(dim=1).all(), "every sample supervises its answer"
    vlm.model.eval()
    with torch.no_grad():
        before = vlm.model(**batch)
    assert torch.isfinite(before.loss)
    answers = vlm.generate(samples, 3)
    assert isinstance(answers, list) and len(answers) == 2 and all(isinstance(a, str) for a in answers)
    attach_adapter(vlm, section("adapter", r=2, alpha=4))
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or any(m in n for m in vlm.full_train) for n in trainable)
    with torch.no_grad():  # a fresh adapter changes nothing until it trains
        torch.testing.assert_close(vlm.model(**batch).logits, before.logits)


def test_load_model_refuses_a_wrapper_that_lacks_part_of_the_protocol(monkeypatch):
    class Half:
        model, processor = object(), object()

        def generate(self, samples, max_new_tokens):
            return []

    class Broken(Backbone):
        """A backbone whose wrapper forgot most of VLM."""

        @staticmethod
        def load(cfg, log=print, progress=True):
            return Half()

    monkeypatch.setitem(BACKBONES._items, "broken", Broken)
    monkeypatch.setitem(BACKBONES._options, "broken", None)
    with pytest.raises(TypeError, match="'broken' returned a Half, which lacks full_train, lora_target, save_base, "
                                        "tokenizer, train_batch of coin.models.backbone.VLM"):
        load_model(section("model", name="broken"))


def test_a_sweep_lets_each_distinct_backbone_prepare_once(monkeypatch, micro_config):
    from coin.engine.sweep import _warm_caches

    prepared = []

    @dataclasses.dataclass
    class ProbeOptions:
        size: int = 1  # anything

    class Probe(Backbone):
        """Records its preparations."""

        Options = ProbeOptions

        @classmethod
        def prepare(cls, cfg, log=print):
            prepared.append(cfg.options.size)

    monkeypatch.setitem(BACKBONES._items, "probe", Probe)
    monkeypatch.setitem(BACKBONES._options, "probe", None)
    plans = [(None, seed, from_dict({**micro_config, "seed": seed, "model": {"name": "probe", "size": size}}), None)
             for seed, size in ((0, 1), (1, 1), (0, 2))]
    _warm_caches(plans, QUIET)
    assert prepared == [1, 2]  # the second plan differs in its seed only: its model was prepared already


# ----------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("name", _builtin(ADAPTERS))
def test_an_adapter_trains_only_its_own_weights_and_starts_as_a_no_op(name, tmp_path):
    from tinyvlm import tiny_samples, tiny_vlm

    vlm = tiny_vlm(seed=0)
    batch = vlm.train_batch(tiny_samples(tmp_path, "A", 2))
    vlm.model.eval()
    with torch.no_grad():
        before = vlm.model(**batch).logits
    cfg = section("adapter", type=name, r=8, alpha=16)  # rank 8: MoELoRA's 8 experts of rank 1
    attach_adapter(vlm, cfg)
    trainable = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert trainable_parameters(vlm.model) > 0
    assert all("lora_" in n or "multi_modal_projector" in n for n in trainable), trainable
    with torch.no_grad():
        torch.testing.assert_close(vlm.model(**batch).logits, before)
    assert describe(flat_dict(cfg)).startswith(f"{name} r=8 alpha=16")  # its line in plans and reports


def test_an_adapter_section_built_by_hand_is_checked_before_it_is_built():
    from tinyvlm import tiny_vlm

    from coin.options import OptionsError

    with pytest.raises(OptionsError, match=r"adapter.r \(6\) must be divisible by adapter.experts \(4\)"):
        attach_adapter(tiny_vlm(seed=0), AdapterConfig(type="moelora", r=6, options={"experts": 4}))


def test_backbone_deviations_reach_the_protocol_card():
    """A backbone's fixes of the original code (MiniGPT-v2's lora_alpha, Qwen-VL's first character) are listed."""
    from coin.models import BACKBONES
    from coin.report.document import to_markdown
    from coin.report.run_report import _model_card

    for name in BACKBONES.names():
        assert all(isinstance(d, str) and d for d in BACKBONES.get(name).deviations), name
    assert any("lora_alpha" in d for d in BACKBONES.get("minigpt-v2").deviations)
    assert any("first character" in d for d in BACKBONES.get("qwen-vl-chat").deviations)
    card = {"backbone": "qwen-vl-chat", "deviations": list(BACKBONES.get("qwen-vl-chat").deviations)}
    md = to_markdown(_model_card({"model_card": card}), None)
    assert "Backbone qwen-vl-chat" in md and "first character" in md
    assert _model_card({"model_card": {"backbone": "tiny", "deviations": []}}) == []
