"""Batched greedy generation (left padding, KV cache) gives exactly the batch-size-1 answers."""

import pytest
import torch

from coin.data.synth import generate
from coin.models.tiny import TinyConfig, build_model, build_processor, train_tokenizer
from coin.models.vlm import LlavaVLM, Sample


@pytest.fixture(scope="module")
def vlm_and_samples(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("g") / "s", seed=1, n_train=2, n_test=0, n_pretrain=40)
    import json

    caps = json.loads((root / "pretrain" / "train.json").read_text())
    tok = train_tokenizer([c["conversations"][1]["value"] for c in caps] + ["USER: ASSISTANT: Describe"], 400)
    cfg = TinyConfig(vocab_size=400, vision_width=32, vision_layers=1, vision_heads=2, lm_width=64, lm_layers=2,
                     lm_heads=2, lm_ffn=128)
    model = build_model(cfg, tok, seed=3)
    # weights far larger than the init's, so attention is sharp: at init scale the next token hardly depends on
    # anything but the current one, and a wrong position or a leak across padding would go unseen
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.25)
    vlm = LlavaVLM(model, build_processor(tok, cfg))
    vlm.model.eval()
    prompts = ["Describe.", "What is the object in the image?\nAnswer the question using a single word or phrase.",
               "Q " * 40 + "?", "Is there a red circle?", "x", "A much longer question about the picture, " * 3]
    samples = [Sample(f"s{k}", "t", str(root / "images" / caps[k]["image"]), p) for k, p in enumerate(prompts)]
    return vlm, samples


def test_batched_equals_one_by_one(vlm_and_samples):
    vlm, samples = vlm_and_samples
    single = [vlm.generate([s], max_new_tokens=12)[0] for s in samples]
    batched = vlm.generate(samples, max_new_tokens=12)
    assert batched == single
    assert len(set(single)) > 1, "outputs should differ across prompts and images"


def test_train_batch_labels_cover_only_the_answer(vlm_and_samples):
    vlm, samples = vlm_and_samples
    s = Sample("a", "t", samples[0].image, "What is it?", "red circle")
    b = vlm.train_batch([s, samples[2].__class__("b", "t", samples[1].image, "Q " * 20, "no")])
    labels = b["labels"][0]
    answer_ids = labels[labels != -100].tolist()
    assert vlm.tokenizer.decode(answer_ids) == " red circle</s>"
    # prompt tokens (incl. the 16 image tokens) are masked, padding is masked
    assert (b["input_ids"][0] == vlm.model.config.image_token_index).sum() == 16
    assert (b["labels"][b["attention_mask"] == 0] == -100).all()
    with torch.no_grad():
        out = vlm.model(**b)
    assert torch.isfinite(out.loss)


def test_generation_prompt_is_the_training_prompt(vlm_and_samples):
    vlm, samples = vlm_and_samples
    s = Sample("a", "t", samples[0].image, "What is it?", "red")
    train_ids = vlm.train_batch([s])["input_ids"][0].tolist()
    gen_ids = vlm.generation_batch([s])["input_ids"][0].tolist()
    assert train_ids[: len(gen_ids)] == gen_ids


def test_multi_turn_labels_cover_every_answer(vlm_and_samples):
    vlm, samples = vlm_and_samples
    s = Sample("m", "t", samples[0].image, "What is it?", "red circle", turns=(("And the size?", "small"),))
    b = vlm.train_batch([s])
    labels = b["labels"][0]
    supervised = vlm.tokenizer.decode(labels[labels != -100].tolist())
    assert supervised == " red circle</s> small</s>"
    text = vlm.tokenizer.decode(b["input_ids"][0].tolist()).replace("<image>", "")
    assert text.endswith("What is it? ASSISTANT: red circle</s>USER: And the size? ASSISTANT: small</s>")


def test_non_square_images_are_padded_not_cropped():
    """LLaVA-1.5's "pad": a wide image keeps its edges (a centre crop would cut them off)."""
    from PIL import Image

    from coin.models.vlm import expand_to_square

    class Proc:
        image_mean = (0.5, 0.25, 0.0)

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.putpixel((0, 10), (0, 255, 0))  # a mark at the left edge
    sq = expand_to_square(img, Proc())
    assert sq.size == (40, 40)
    assert sq.getpixel((0, 20)) == (0, 255, 0)  # the edge survives, shifted down by the padding
    assert sq.getpixel((20, 0)) == (128, 64, 0)  # padding is the processor's mean colour
    assert sq.getpixel((20, 20)) == (255, 0, 0)
    same = Image.new("RGB", (16, 16))
    assert expand_to_square(same, Proc()) is same
