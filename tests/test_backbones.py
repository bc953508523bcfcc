"""Real HF backbones through the model protocol: tiny random Qwen2-VL and llava-hf folders, offline.

The same folder goes through ``coin run`` as ``qwen2-vl`` (its own entry), as ``hf`` (the generic
chat-template path) and, for LLaVA, as ``llava``; then the protocol's promises are checked on the
tiny Qwen2-VL directly: batched answers equal one-by-one answers, labels cover exactly the answers,
LoRA lands only on the LM.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from PIL import Image

import tinyhf
from coin.config_load import from_dict, section
from coin.engine.run import run
from coin.models import load_model
from coin.models.chat.wrapper import ChatVLM, Targets, fallback_targets, load_chat_vlm, targets_for
from coin.data.sample import Sample

pytestmark = pytest.mark.slow

LM_PROJ = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {"qwen": tinyhf.build_qwen2_vl(root / "qwen2-vl"), "llava": tinyhf.build_llava(root / "llava")}


@pytest.fixture(scope="module")
def qwen(folders) -> ChatVLM:
    vlm = load_chat_vlm(section("model", name="qwen2-vl", path=str(folders["qwen"])))
    vlm.model.eval()
    return vlm


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Images of different content and sizes (so Qwen2-VL gives them different numbers of tokens)."""
    root = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    paths = []
    for k, (w, h) in enumerate([(64, 64), (64, 32), (96, 64), (64, 64)]):
        pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        paths.append(str(root / f"{k}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


# ----------------------------------------------------------------------------- coin run, resume


@pytest.mark.parametrize("name,folder", [("qwen2-vl", "qwen"), ("hf", "qwen"), ("llava", "llava")])
def test_run_two_stages_then_resume_gives_the_same_matrix(name, folder, folders, micro_config, tmp_path):
    cfg = micro_config
    cfg["model"] = {"name": name, "path": str(folders[folder])}
    cfg["train"]["lr"] = 3e-2  # enough for the adapters to change the answers, so reloading them is tested
    out = tmp_path / "run"
    quiet = lambda *a: None  # noqa: E731
    first = run(from_dict(cfg), out, progress=False, log=quiet)
    assert first["tasks"] == ["ImageNet", "Grounding"]
    assert first["matrix"][1][0] is not None and first["matrix"][1][1] is not None
    assert first["cost"]["trainable_params"] > 0
    stage2 = out / "stages" / "02-Grounding"
    before = {p.name: p.read_text() for p in (stage2 / "predictions").glob("*.jsonl")}
    assert set(before) == {"ImageNet.jsonl", "Grounding.jsonl"}
    zero_shot = (out / "stages" / "00-zeroshot" / "predictions" / "ImageNet.jsonl").read_text()
    assert _outputs(zero_shot) != _outputs(before["ImageNet.jsonl"]), "training should change the answers"
    # stage 2 trained but not evaluated: the rerun skips stage 1, loads stage 2's adapter, evaluates again
    (stage2 / "DONE").unlink()
    (stage2 / "scores.json").unlink()
    shutil.rmtree(stage2 / "predictions")
    logs: list[str] = []
    again = run(from_dict(cfg), out, progress=False, log=logs.append)
    assert any("1/2 ImageNet: done earlier, skipped" in line for line in logs)
    assert any("2/2 Grounding: trained earlier, evaluating" in line for line in logs)
    assert again["matrix"] == first["matrix"] and again["zero_shot"] == first["zero_shot"]
    assert {p.name: p.read_text() for p in (stage2 / "predictions").glob("*.jsonl")} == before


def _outputs(jsonl: str) -> list[str]:
    return [json.loads(line)["output"] for line in jsonl.splitlines()]


# ----------------------------------------------------------------------------- generation and labels


def test_batched_generation_equals_one_by_one(qwen, images):
    prompts = ["x", "What is the object in the image?\nAnswer the question using a single word or phrase.",
               "Describe the image. " * 12, "Is there a red circle?"]
    samples = [Sample(f"s{k}", "t", images[k], p) for k, p in enumerate(prompts)]
    widths = [(qwen.generation_batch([s])["input_ids"] != qwen.pad_id).sum().item() for s in samples]
    assert max(widths) - min(widths) > 30, "prompts of very different lengths"
    single = [qwen.generate([s], max_new_tokens=10)[0] for s in samples]
    assert qwen.generate(samples, max_new_tokens=10) == single
    assert qwen.generate(samples[::-1], max_new_tokens=10) == single[::-1]
    assert len(set(single)) > 1, "outputs should differ across prompts and images"


def test_qwen_generation_uses_the_in_place_cache_and_matches_hf_cache(qwen, images, monkeypatch):
    import coin.models.kv_cache as kv

    samples = [Sample(f"s{k}", "t", images[k], p) for k, p in enumerate(["x", "Describe the image. " * 8, "Colour?"])]
    made = []
    real = kv.preallocated_cache
    monkeypatch.setattr(kv, "preallocated_cache", lambda model, cap: made.append(real(model, cap)) or made[-1])
    ours = qwen.generate(samples, max_new_tokens=10)
    assert made and all(isinstance(layer, kv.PreallocatedLayer) for layer in made[0].layers)
    assert made[0].layers[0].get_seq_length() > 0, "generate used the cache it was given"
    qwen.kv_cache = "dynamic"
    try:
        assert qwen.generate(samples, max_new_tokens=10) == ours
    finally:
        qwen.kv_cache = "preallocated"


def test_generation_is_greedy_whatever_the_hub_generation_config_says(qwen, images):
    samples = [Sample(f"s{k}", "t", images[k], p) for k, p in enumerate(["What is it?", "Describe the image."])]
    greedy = qwen.generate(samples, max_new_tokens=10)
    config = qwen.model.generation_config
    saved = config.to_dict()
    try:  # what Qwen2-VL-Instruct's generation_config.json asks for
        config.update(do_sample=True, temperature=0.7, top_k=5, top_p=0.5, repetition_penalty=1.5)
        assert qwen.generate(samples, max_new_tokens=10) == greedy
    finally:
        config.update(**saved)


def test_save_base_reloads_the_same_model(qwen, images, tmp_path):
    s = Sample("a", "t", images[2], "What is it?", "a cat")
    qwen.save_base(tmp_path / "base")
    again = load_chat_vlm(section("model", name="hf", path=str(tmp_path / "base")))
    a, b = qwen.train_batch([s]), again.train_batch([s])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(qwen.model(**a).logits, again.model(**b).logits)


def test_labels_cover_exactly_the_answers_and_ends_of_turn(qwen, images):
    multi = Sample("m", "t", images[1], "What colour is it?", "red", turns=(("And the shape?", "a small circle"),))
    short = Sample("s", "t", images[0], "x", "no")
    b = qwen.train_batch([multi, short])
    tok = qwen.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for row, text in enumerate(["red<|im_end|>a small circle<|im_end|>", "no<|im_end|>"]):
        ids, labels, mask = b["input_ids"][row], b["labels"][row], b["attention_mask"][row]
        keep = labels != -100
        assert tok.decode(labels[keep]) == text
        assert torch.equal(labels[keep], ids[keep])  # labels are the input tokens themselves
        assert (labels[mask == 0] == -100).all()  # padding (right) is never labelled
        n = int(mask.sum())
        assert ids[n - 1] == end and labels[n - 1] == end  # the sequence ends with a labelled end of turn
    # the ids of <|im_start|>assistant\n before each answer, and the image tokens, are masked
    image_id = qwen.model.config.image_token_id
    assert (b["labels"][b["input_ids"] == image_id] == -100).all()
    assert (b["mm_token_type_ids"] == (b["input_ids"] == image_id)).all()
    # 64 wide, 32 high -> 2x4 patches (2 tokens), 64x64 -> 4x4 (4 tokens): both images' patches concatenated
    assert b["image_grid_thw"].tolist() == [[1, 2, 4], [1, 4, 4]]
    assert b["pixel_values"].shape[0] == 8 + 16
    # the generation prompt is the training prompt
    gen = qwen.generation_batch([multi])["input_ids"][0].tolist()
    assert b["input_ids"][0].tolist()[: len(gen)] == gen
    with torch.no_grad():
        assert torch.isfinite(qwen.model(**b).loss)


def test_chat_path_reproduces_the_llava_format(folders, images):
    """``hf`` on a LLaVA folder builds LlavaVLM's batches from the chat template alone.

    The one difference is LlavaVLM's explicit BOS, which the tiny tokenizer does not add by itself
    (and the images are square, as LlavaVLM pads others to a square and the chat path does not).
    """
    llava = load_model(section("model", name="llava", path=str(folders["llava"])))
    chat = load_model(section("model", name="hf", path=str(folders["llava"])))
    assert isinstance(chat, ChatVLM) and chat.end_of_turn == "</s>"
    samples = [Sample("m", "t", images[0], "What colour is it?", "red", turns=(("And the shape?", "circle"),)),
               Sample("s", "t", images[3], "Describe the image in detail.", "a blue square")]
    a, b = llava.train_batch(samples), chat.train_batch(samples)
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    for k in range(len(samples)):
        n, m = int(a["attention_mask"][k].sum()), int(b["attention_mask"][k].sum())
        assert a["input_ids"][k, 0] == llava.tokenizer.bos_token_id
        assert a["input_ids"][k, 1:n].tolist() == b["input_ids"][k, :m].tolist()
        assert a["labels"][k, 1:n].tolist() == b["labels"][k, :m].tolist()


# ----------------------------------------------------------------------------- LoRA targets


def _linear_names(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


def _check_lm_only(model, targets: Targets, layers: int) -> None:
    matched = [n for n in _linear_names(model) if re.fullmatch(targets.lora, n)]
    assert matched, "LoRA must target something"
    assert all(n.startswith("model.language_model.layers.") for n in matched), matched
    assert {n.split(".", 4)[-1] for n in matched} == LM_PROJ
    assert len(matched) == len(LM_PROJ) * layers


def test_lora_targets_only_the_language_model(qwen):
    model = qwen.model
    assert model.config.model_type == "qwen2_vl"
    assert any(n.startswith("model.visual.blocks.") for n in _linear_names(model))  # the tower has linears too
    _check_lm_only(model, targets_for(model), layers=2)
    assert qwen.full_train == ["visual.merger"]
    fallback = fallback_targets(model)  # what an unlisted model type would get
    _check_lm_only(model, fallback, layers=2)
    assert fallback.full_train == ("model.visual.merger",)


def test_lora_targets_of_qwen2_5_vl_skip_the_towers_gate_up_down():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, bos_token_id=None, eos_token_id=1, pad_token_id=0,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]})
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                  window_size=32, fullatt_block_indexes=[0])
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=2, video_token_id=3, vision_start_token_id=4,
        vision_end_token_id=5))
    assert "model.visual.blocks.0.mlp.gate_proj" in _linear_names(model)
    _check_lm_only(model, targets_for(model), layers=2)
    _check_lm_only(model, fallback_targets(model), layers=2)


def test_peft_wraps_only_lm_layers_and_trains_the_merger(folders):
    from peft import LoraConfig, get_peft_model

    vlm = load_chat_vlm(section("model", name="hf", path=str(folders["qwen"])))
    peft_model = get_peft_model(vlm.model, LoraConfig(r=2, lora_alpha=4, target_modules=vlm.lora_target,
                                                      modules_to_save=vlm.full_train))
    wrapped = {n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert wrapped and all(".language_model.layers." in n for n in wrapped)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or ".visual.merger.modules_to_save." in n for n in trainable), trainable
    assert any(".visual.merger.modules_to_save." in n for n in trainable)


# ----------------------------------------------------------------------------- errors


def test_a_folder_without_chat_template_is_refused_by_name(folders, tmp_path):
    bare = tinyhf.without_chat_template(folders["qwen"], tmp_path / "bare")
    with pytest.raises(ValueError, match=re.escape(str(bare)) + ".*no chat template"):
        load_model(section("model", name="hf", path=str(bare)))


def test_qwen2_vl_refuses_another_model_type(folders):
    with pytest.raises(ValueError, match="qwen2_vl or qwen2_5_vl.*'llava'"):
        load_model(section("model", name="qwen2-vl", path=str(folders["llava"])))


# ----------------------------------------------------------------------------- #22.4: pixels


def test_qwen_images_are_capped_by_model_max_pixels(folders, images):
    wide = Sample("w", "VQAv2", images[2], "What is it?", "x")  # 96x64
    default = load_chat_vlm(section("model", name="qwen2-vl", path=str(folders["qwen"])))
    assert default.processor.image_processor.size.longest_edge == 1280 * 28 * 28  # not the folder's own
    assert default.generation_batch([wide])["image_grid_thw"].tolist() == [[1, 4, 6]]
    capped = load_chat_vlm(section("model", name="qwen2-vl", path=str(folders["qwen"]), max_pixels=2048,
                                   min_pixels=512))
    assert capped.processor.image_processor.size.shortest_edge == 512
    grid = capped.generation_batch([wide])["image_grid_thw"]
    assert grid.tolist() == [[1, 2, 2]] and int(grid.prod()) * tinyhf.PATCH**2 <= 2048


def test_qwen_pads_grounding_images_to_a_square(qwen, images):
    """CoIN's boxes are normalised to the image padded to a square; other tasks keep the image's shape."""
    wide = images[1]  # 64 wide, 32 high
    grounding = qwen.generation_batch([Sample("g", "Grounding", wide, "the red circle")])["image_grid_thw"]
    other = qwen.generation_batch([Sample("v", "VQAv2", wide, "What is it?")])["image_grid_thw"]
    assert grounding.tolist() == [[1, 4, 4]] and other.tolist() == [[1, 2, 4]]


def test_qwen_training_sequences_are_cut_to_max_length(qwen, images):
    s = Sample("long", "t", images[0], "What is it?", "a red circle " * 10)
    full = qwen.train_batch([s])
    prompt = qwen.generation_batch([s])["input_ids"].shape[1]
    qwen.max_length = prompt + 3
    try:
        cut = qwen.train_batch([s])
        assert set(cut) == set(full) and cut["input_ids"].shape[1] == prompt + 3
        for key in ("input_ids", "attention_mask", "labels", "mm_token_type_ids"):
            assert torch.equal(cut[key][0], full[key][0, : prompt + 3]), key
        assert qwen.truncated == {"long"}
        qwen.max_length = prompt - 1
        with pytest.raises(ValueError, match="record long .*model.max_length"):
            qwen.train_batch([s])
    finally:
        qwen.max_length, qwen.truncated = None, set()


def test_qwen_evaluation_builds_each_batch_ahead_in_a_thread(qwen, images, monkeypatch):
    """#30 point 6 for the chat backbones (Qwen2-VL, ``hf``): the next batch's inputs (images decoded, resized,
    cut into patches; prompts tokenised) are built in a thread while the model answers the batch before, and
    the answers are the inline ones."""
    import threading

    from coin.engine.evaluate import generate_answers

    records = [{"question_id": f"q{k}", "task": "GQA", "image_path": images[k % 4], "text": f"What is shown, {k}?"}
               for k in range(7)]
    built: list[str] = []
    real = ChatVLM.generation_batch

    def recorded(self, samples):
        built.append(threading.current_thread().name)
        return real(self, samples)

    monkeypatch.setattr(ChatVLM, "generation_batch", recorded)
    monkeypatch.setattr(qwen, "prefetch", None)  # an evaluation without the thread
    inline = generate_answers(qwen, records, 6, 2, progress=False)
    assert len(built) == 4 and not any(name.startswith("coin-prefetch") for name in built)
    monkeypatch.delattr(qwen, "prefetch")
    built.clear()
    ahead = generate_answers(qwen, records, 6, 2, progress=False)
    assert ahead == inline and len(set(inline.values())) > 1
    assert len(built) == 4 and all(name.startswith("coin-prefetch") for name in built), built  # none rebuilt
    assert not qwen._prefetched  # every batch built ahead was taken


def test_a_bad_image_stops_a_qwen_evaluation_naming_it_and_keeps_the_answers_before(qwen, images, tmp_path):
    """A prefetched batch that cannot read its image: the evaluation stops at that batch with the image named,
    and the answers of the batches before are on disk (a relaunch asks only the rest)."""
    import json

    from coin.engine.evaluate import generate_answers
    from coin.errors import ImageError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    records = [{"question_id": f"q{k}", "task": "GQA", "image_path": str(broken) if k == 4 else images[k % 4],
                "text": f"What is shown, {k}?"} for k in range(6)]
    partial = tmp_path / "GQA.rank0.partial.jsonl"
    with pytest.raises(ImageError, match="broken.png"):
        generate_answers(qwen, records, 4, 2, progress=False, partial=partial)
    kept = [json.loads(line)["question_id"] for line in partial.read_text().splitlines()]
    assert kept == ["q0", "q1", "q2", "q3"]
    assert not qwen._prefetched  # nothing left behind for the next evaluation
