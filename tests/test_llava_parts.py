"""llava-pretrain: LLaVA-1.5 assembled from an LM folder, a CLIP folder and mm_projector.bin.

The parts are tiny and random, written in the test in the layouts LLaVA's release uses: a
LlamaForCausalLM folder whose tokenizer has no <image> (nor pad) token, a CLIP vision folder
with its image processor, and a torch-saved plain dict with LLaVA's projector key names.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
import yaml
from PIL import Image

from coin.cli import main
from coin.config import ConfigError, ModelConfig
from coin.config_load import section
from coin.options import OptionsError
from coin.models import load_model
from coin.models.conversation import VICUNA_V1_SYSTEM
from coin.models.llava.parts import MissingPartError, PartsError, assemble_llava
from coin.data.sample import Sample
from coin.models.llava.wrapper import LlavaVLM

LM_WIDTH, VISION_WIDTH, IMAGE, PATCH = 32, 24, 64, 16  # CoIN-Synth's 64x64 images -> 16 image tokens
PROJ = "model.mm_projector."


def _tokenizer(vocab_size: int = 300):
    """A byte-level BPE tokenizer like Vicuna's in what matters here: <unk> <s> </s>, no pad, no <image>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = ["USER: What is the object in the image? Answer the question using a single word or phrase. "
             "ASSISTANT: a red circle", "Please provide the bounding box coordinate of the region [0.12, 0.5]"]
    tok.train_from_iterator(texts * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _write_lm(path, tie: bool = False) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(1)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=LM_WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=tie)).save_pretrained(path)
    tok.save_pretrained(path)


def _write_clip(path, full_clip: bool = False) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    vision = dict(hidden_size=VISION_WIDTH, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                  image_size=IMAGE, patch_size=PATCH, projection_dim=VISION_WIDTH)
    torch.manual_seed(2)
    if full_clip:  # openai/clip-vit-large-patch14-336's own layout: the whole CLIP, text tower included
        text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    vocab_size=100, projection_dim=VISION_WIDTH)
        CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=VISION_WIDTH)).save_pretrained(path)
    else:
        CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(path)
    processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    processor.save_pretrained(path)


def _projector(prefix: str = PROJ) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {f"{prefix}0.weight": torch.randn(LM_WIDTH, VISION_WIDTH, generator=g),
            f"{prefix}0.bias": torch.randn(LM_WIDTH, generator=g),
            f"{prefix}2.weight": torch.randn(LM_WIDTH, LM_WIDTH, generator=g),
            f"{prefix}2.bias": torch.randn(LM_WIDTH, generator=g)}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return write_parts(tmp_path_factory.mktemp("parts"))


def write_parts(root) -> dict:
    """A tiny Vicuna folder, CLIP folder and stage-1 projector file under ``root``, and three samples
    (also used by tests/test_contracts.py to load ``llava-pretrain``)."""
    _write_lm(root / "vicuna")
    _write_clip(root / "clip")
    torch.save(_projector(), root / "mm_projector.bin")
    images = root / "images"
    images.mkdir()
    samples = []
    for k, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (IMAGE, IMAGE), colour).save(images / f"{k}.png")
        samples.append(Sample(str(k), "T", str(images / f"{k}.png"), "What colour is it?", colour))
    return {"lm": root / "vicuna", "vision": root / "clip", "projector": root / "mm_projector.bin",
            "root": root, "samples": samples}


@pytest.fixture(scope="module")
def assembled(parts):
    return assemble_llava(parts["lm"], parts["vision"], parts["projector"], dtype="fp32", log=lambda *a: None)


def _assemble(parts, projector_file, **kw):
    return assemble_llava(parts["lm"], kw.get("vision", parts["vision"]), projector_file, dtype="fp32",
                          log=lambda *a: None)


def test_every_weight_comes_from_a_part(parts, assembled):
    from transformers import AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

    model, processor = assembled
    state = model.state_dict()
    checked = set()
    old = len(AutoTokenizer.from_pretrained(str(parts["lm"])))
    for key, want in LlamaForCausalLM.from_pretrained(str(parts["lm"])).state_dict().items():
        name = key.replace("model.", "model.language_model.", 1) if key.startswith("model.") else key
        got = state[name]
        if name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            assert got.shape[0] == old + 2  # <image> and <pad>
            torch.testing.assert_close(got[old:], want.mean(0, keepdim=True).expand(2, -1), rtol=0, atol=1e-6)
            got = got[:old]
        assert torch.equal(got, want), name
        checked.add(name)
    for key, want in CLIPVisionModel.from_pretrained(str(parts["vision"])).state_dict().items():
        assert torch.equal(state["model.vision_tower." + key], want), key
        checked.add("model.vision_tower." + key)
    saved = torch.load(parts["projector"], weights_only=True)
    for ours, theirs in (("linear_1", "0"), ("linear_2", "2")):
        for p in ("weight", "bias"):
            name = f"model.multi_modal_projector.{ours}.{p}"
            assert torch.equal(state[name], saved[f"{PROJ}{theirs}.{p}"])
            checked.add(name)
    assert checked == set(state)  # nothing in the model that did not come from a part
    assert not any(t.is_meta for t in model.parameters()) and not any(b.is_meta for b in model.buffers())

    tok = processor.tokenizer
    cfg = model.config
    assert (tok.convert_tokens_to_ids("<image>"), tok.pad_token_id) == (old, old + 1)  # as llava-hf: 32000, 32001
    assert cfg.image_token_index == old and cfg.image_seq_length == (IMAGE // PATCH) ** 2
    assert cfg.vision_feature_layer == -2 and cfg.vision_feature_select_strategy == "default"
    assert cfg.projector_hidden_act == "gelu"
    assert cfg.text_config.vocab_size == old + 2
    gen = model.generation_config
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (tok.bos_token_id, tok.eos_token_id, old + 1)


def test_forward_generate_and_processor(parts, assembled):
    model, processor = assembled
    vlm = LlavaVLM(model, processor)
    assert vlm.num_image_tokens == 16
    batch = vlm.train_batch(parts["samples"])
    assert int((batch["input_ids"] == model.config.image_token_index).sum()) == 3 * 16
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None
    model.zero_grad(set_to_none=True)
    answers = vlm.generate(parts["samples"], max_new_tokens=3)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    # the processor's own path (chat template, <image> expansion) reaches the same model
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]}]
    text = processor.apply_chat_template(conv, add_generation_prompt=True)
    assert text == VICUNA_V1_SYSTEM + " USER: <image>\nWhat colour is it? ASSISTANT:"  # CoIN's vicuna_v1
    vicuna = LlavaVLM(model, processor, conversation="vicuna_v1")
    assert vicuna.prompt_text("What colour is it?") == text.replace("<image>", "<image>" * 16)
    inputs = processor(images=[Image.open(parts["samples"][0].image)], text=[text], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 16
    assert model(**inputs).logits.shape[-1] == len(processor.tokenizer)


@pytest.mark.parametrize("prefix", ["mm_projector.", ""])
def test_other_projector_prefixes_and_safetensors(parts, assembled, tmp_path, prefix):
    from safetensors.torch import save_file

    path = tmp_path / "proj.bin"
    torch.save(_projector(prefix), path)
    model, _ = _assemble(parts, path)
    assert torch.equal(model.model.multi_modal_projector.linear_2.bias, _projector()[PROJ + "2.bias"])
    st = tmp_path / "proj.safetensors"
    save_file(_projector(prefix), str(st))
    model, _ = _assemble(parts, st)
    assert torch.equal(model.model.multi_modal_projector.linear_1.weight, _projector()[PROJ + "0.weight"])


def _wrong_shape(sd):
    sd[PROJ + "0.weight"] = torch.zeros(LM_WIDTH, VISION_WIDTH + 4)


def _missing(sd):
    del sd[PROJ + "2.bias"]


def _unknown(sd):
    sd[PROJ + "4.weight"] = torch.zeros(LM_WIDTH, LM_WIDTH)  # an mlp3x_gelu projector's third layer


@pytest.mark.parametrize("edit, words", [
    (_wrong_shape, [PROJ + "0.weight", "(32, 28)", "expected (32, 24)", "vision hidden size 24"]),
    (_missing, ["missing key", PROJ + "2.bias"]),
    (_unknown, ["unexpected key", PROJ + "4.weight"]),
])
def test_projector_mapping_errors_name_file_and_key(parts, tmp_path, edit, words):
    sd = _projector()
    edit(sd)
    path = tmp_path / "mm_projector.bin"
    torch.save(sd, path)
    with pytest.raises(PartsError) as e:
        _assemble(parts, path)
    for w in [str(path)] + words:
        assert w in str(e.value), (w, str(e.value))


class _Payload:
    """A custom object in a projector file: unpickling it would import and run this module's code."""


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))  # unpickling would create the folder


@pytest.mark.parametrize("kind", ["instance", "code"])
def test_pickled_objects_are_refused(parts, tmp_path, kind):
    marker = str(tmp_path / "pwned")
    payload = _Payload() if kind == "instance" else _RunsCode(marker)
    path = tmp_path / "mm_projector.bin"
    torch.save({**_projector(), PROJ + "extra": payload}, path)
    with pytest.raises(PartsError) as e:
        _assemble(parts, path)
    msg = str(e.value)
    assert str(path) in msg and "weights-only" in msg
    assert ("_Payload" if kind == "instance" else "posix.mkdir") in msg  # the offending object is named
    assert not os.path.exists(marker)


def test_missing_parts_are_named(parts, tmp_path):
    with pytest.raises(MissingPartError, match="LM folder .*nowhere does not exist"):
        assemble_llava(tmp_path / "nowhere", parts["vision"], parts["projector"], log=lambda *a: None)
    with pytest.raises(MissingPartError, match="projector file .*nope.bin does not exist"):
        _assemble(parts, tmp_path / "nope.bin")
    bare = tmp_path / "clip-no-processor"
    bare.mkdir()
    (bare / "config.json").write_text((parts["vision"] / "config.json").read_text())
    with pytest.raises(MissingPartError, match="has no preprocessor_config.json"):
        _assemble(parts, parts["projector"], vision=bare)
    with pytest.raises(ConfigError, match="model.vision_path is required for model.name 'llava-pretrain'"):
        section("model", name="llava-pretrain", lm_path=str(parts["lm"]), projector_path="x.bin")
    # a section built by hand, past the config's validation: load_model checks it before any weights load
    with pytest.raises(OptionsError, match="model.vision_path is required"):
        load_model(ModelConfig(name="llava-pretrain", options={"lm_path": str(parts["lm"]), "projector_path": "x.bin"}))


def test_part_with_a_missing_or_misshaped_weight_is_refused(parts, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    for edit, words in (("drop", ["missing weight", "norm.weight"]), ("shape", ["norm.weight", "shape"])):
        lm = tmp_path / f"lm-{edit}"
        shutil.copytree(parts["lm"], lm)
        weights = load_file(str(lm / "model.safetensors"))
        if edit == "drop":
            del weights["model.norm.weight"]
        else:
            weights["model.norm.weight"] = torch.ones(LM_WIDTH + 1)
        save_file(weights, str(lm / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(PartsError) as e:
            assemble_llava(lm, parts["vision"], parts["projector"], log=lambda *a: None)
        for w in [f"LM folder {lm}"] + words:
            assert w in str(e.value), (w, str(e.value))


def test_full_clip_folder_and_tied_lm(parts, tmp_path):
    from transformers import CLIPModel, LlamaForCausalLM

    _write_clip(tmp_path / "clip-full", full_clip=True)
    _write_lm(tmp_path / "tied", tie=True)
    model, _ = assemble_llava(tmp_path / "tied", tmp_path / "clip-full", parts["projector"], dtype="fp32",
                              log=lambda *a: None)
    clip = CLIPModel.from_pretrained(str(tmp_path / "clip-full"))
    assert torch.equal(model.model.vision_tower.encoder.layers[1].mlp.fc1.weight,
                       clip.vision_model.encoder.layers[1].mlp.fc1.weight)
    lm = LlamaForCausalLM.from_pretrained(str(tmp_path / "tied"))
    assert model.lm_head.weight is model.get_input_embeddings().weight
    n = lm.config.vocab_size
    assert torch.equal(model.lm_head.weight[:n], lm.lm_head.weight)


def test_cli_assemble_writes_a_llava_folder(parts, assembled, tmp_path, capsys):
    out = tmp_path / "llava-1.5-pretrain"
    args = ["model", "assemble", "--lm", str(parts["lm"]), "--vision", str(parts["vision"]),
            "--projector", str(parts["projector"]), "--out", str(out), "--dtype", "fp32"]
    assert main(args) == 0
    assert (out / "model.safetensors").is_file() and (out / "assembled_from.json").is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left
    loaded = load_model(section("model", name="llava", path=str(out), dtype="fp32"))
    ours = LlavaVLM(*assembled, conversation="vicuna_v1")  # what model.name llava and llava-pretrain use
    batch = ours.train_batch(parts["samples"])
    assert torch.equal(loaded.train_batch(parts["samples"])["input_ids"], batch["input_ids"])
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, ours.model(**batch).logits)
    assert loaded.generate(parts["samples"], 4) == ours.generate(parts["samples"], 4)
    assert main(args) == 2  # an existing folder is never overwritten
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_coin_run_from_the_parts(parts, tmp_path, micro_config):
    cfg = {k: v for k, v in micro_config.items() if k != "model"}
    cfg["model"] = {"name": "llava-pretrain", "dtype": "fp32", "lm_path": str(parts["lm"]),
                    "vision_path": str(parts["vision"]), "projector_path": str(parts["projector"])}
    path = tmp_path / "llava-pretrain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    for stage in ("01-ImageNet", "02-Grounding"):
        assert (out / "stages" / stage / "DONE").is_file()
    m = json.loads((out / "matrix.json").read_text())
    assert m["tasks"] == ["ImageNet", "Grounding"] and m["matrix"][1][0] is not None


# ----------------------------------------------------------------------------- #22.2: Vicuna's tokenizer.model


def _write_sentencepiece_lm(path) -> None:
    """A Vicuna-style LM folder whose tokenizer is only ``tokenizer.model`` (sentencepiece) and its config."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir()
    corpus = path.parent / "corpus.txt"
    corpus.write_text("\n".join([VICUNA_V1_SYSTEM, "USER: What colour is it? ASSISTANT: red green blue",
                                 "Answer the question using a single word or phrase."] * 20))
    spm.SentencePieceTrainer.train(  # Llama's settings: BPE, byte fallback, <unk> <s> </s> = 0 1 2, no pad
        input=str(corpus), model_prefix=str(path / "tokenizer"), vocab_size=320, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True,
        minloglevel=2)
    (path / "tokenizer.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({  # as lmsys/vicuna-7b-v1.5's
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "model_max_length": 4096, "clean_up_tokenization_spaces": False}))
    torch.manual_seed(1)
    LlamaForCausalLM(LlamaConfig(vocab_size=320, hidden_size=LM_WIDTH, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2, bos_token_id=1,
                                 eos_token_id=2)).save_pretrained(path)


def test_a_sentencepiece_only_tokenizer_folder_assembles(parts, tmp_path):
    """Vicuna and LLaMA-2 ship only tokenizer.model: transformers needs sentencepiece and protobuf to read it."""
    _write_sentencepiece_lm(tmp_path / "vicuna-sp")
    assert sorted(p.name for p in (tmp_path / "vicuna-sp").glob("tok*")) == ["tokenizer.model",
                                                                            "tokenizer_config.json"]
    model, processor = assemble_llava(tmp_path / "vicuna-sp", parts["vision"], parts["projector"], dtype="fp32",
                                      log=lambda *a: None)
    tok = processor.tokenizer
    assert type(tok).__name__ == "LlamaTokenizer" and len(tok) == 320 + 2  # + <image> and <pad>
    b = LlavaVLM(model, processor).train_batch(parts["samples"][:1])
    labels = b["labels"][0]
    assert tok.decode(labels[labels != -100]) == "red</s>"
    assert torch.isfinite(model(**b).loss)


def test_the_real_backbones_dependencies_are_declared():
    """The README's GPU install (`.[real]`) and the test extra carry Vicuna's tokenizer dependencies."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("real", "test"):
        names = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in extras[extra]}
        assert {"sentencepiece", "protobuf"} <= names, extra
    assert 'pip install -e ".[real]"' in (root / "README.md").read_text()
