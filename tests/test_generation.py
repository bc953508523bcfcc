"""Batched greedy generation (left padding, KV cache) gives exactly the batch-size-1 answers."""

import pytest
import torch

from coin.data.sample import Sample
from tinyvlm import sharp_vlm_and_samples


@pytest.fixture(scope="module")
def vlm_and_samples(tmp_path_factory):
    prompts = ["Describe.", "What is the object in the image?\nAnswer the question using a single word or phrase.",
               "Q " * 40 + "?", "Is there a red circle?", "x", "A much longer question about the picture, " * 3]
    return sharp_vlm_and_samples(tmp_path_factory.mktemp("g") / "s", prompts, data_seed=1, model_seed=3)


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

    from coin.models.images import expand_to_square

    class Proc:
        image_mean = (0.5, 0.25, 0.0)

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.putpixel((0, 10), (0, 255, 0))  # a mark at the left edge
    sq = expand_to_square(img, Proc())
    assert sq.size == (40, 40)
    assert sq.getpixel((0, 20)) == (0, 255, 0)  # the edge survives, shifted down by the padding
    assert sq.getpixel((20, 0)) == (127, 63, 0)  # padding is the processor's mean colour, int(255 * mean)
    assert sq.getpixel((20, 20)) == (255, 0, 0)
    same = Image.new("RGB", (16, 16))
    assert expand_to_square(same, Proc()) is same
