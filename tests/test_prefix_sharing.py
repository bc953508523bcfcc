"""Shared image prefixes (coin.models.decode.shared_prefix_decode): every answer equals the unshared one."""

import pytest

import coin.models.decode as decode
from coin.data.sample import Sample
from tinyvlm import sharp_vlm_and_samples

PROMPTS = ["Describe.", "What is the object in the image?", "Q " * 20 + "?", "Is there a red circle?", "x",
           "A much longer question about the picture, " * 2, "Colour?", "Where is the star?", "Shape?"]
# groups of 4, 3, 1 and 1 questions on four images, with suffixes of many lengths, interleaved
IMAGE_OF = [0, 1, 0, 2, 1, 0, 3, 1, 0]


@pytest.fixture(scope="module")
def vlm_and_samples(tmp_path_factory):
    vlm, samples = sharp_vlm_and_samples(tmp_path_factory.mktemp("p") / "s", PROMPTS, data_seed=2, model_seed=5)
    shared = [Sample(s.id, s.task, samples[IMAGE_OF[k]].image, s.prompt) for k, s in enumerate(samples)]
    return vlm, shared


def _unshared(vlm, samples, max_new, eos, compact_at=0.25):
    return decode.greedy_decode(vlm.model, vlm.generation_batch(samples), max_new, eos, compact_at=compact_at)


def _shared(vlm, samples, max_new, eos, compact_at=0.25):
    plan = decode.plan_shared_prefix(vlm._prompt_ids(samples), [s.image for s in samples],
                                     forbidden=vlm.tokenizer.convert_tokens_to_ids(vlm.image_token))
    assert plan is not None and len(plan.prefixes) == 4
    images = vlm.image_inputs([samples[i] for i in plan.first_row])
    return decode.shared_prefix_decode(vlm.model, plan, images, vlm.tokenizer.pad_token_id, max_new, eos,
                                       compact_at=compact_at)


def test_plan_splits_each_group_at_its_common_prefix():
    plan = decode.plan_shared_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3, 4, 6], [7, 8]], ["a", "a", "a", "b"])
    assert plan.prefixes == [[1, 2], [7]] and plan.group_of == [0, 0, 0, 1]
    assert plan.suffixes == [[3, 4], [5], [3, 4, 6], [8]] and plan.first_row == [0, 3]
    # identical prompts still leave each row its last token to prefill
    plan = decode.plan_shared_prefix([[1, 2, 3], [1, 2, 3]], ["a", "a"])
    assert plan.prefixes == [[1, 2]] and plan.suffixes == [[3], [3]]
    assert decode.plan_shared_prefix([[1, 2], [1, 3]], ["a", "b"]) is None  # nothing shared
    assert decode.plan_shared_prefix([[9, 2, 1, 5], [9, 3, 1, 5]], ["a", "a"], forbidden=1) is None


@pytest.mark.parametrize("compact_at", [0.0, 0.25, 1.0])
def test_shared_answers_equal_unshared_token_for_token(vlm_and_samples, compact_at):
    vlm, samples = vlm_and_samples
    free = _unshared(vlm, samples, 10, [-1])
    assert len({tuple(r) for r in free}) >= 6, "the fixture should give distinct answers"
    # an end token that stops rows at different steps, so finished rows are compacted mid-batch
    eos = max({t for r in free for t in r[:-2]},
              key=lambda t: len({r.index(t) if t in r else 99 for r in free}))
    expected = _unshared(vlm, samples, 10, [eos], compact_at)
    assert len({len(r) for r in expected}) >= 3
    assert _shared(vlm, samples, 10, [eos], compact_at) == expected
    assert _shared(vlm, samples, 10, [-1], compact_at) == free


def test_vlm_generate_shares_and_gives_the_same_strings(vlm_and_samples, monkeypatch):
    vlm, samples = vlm_and_samples
    plain = vlm.generate(samples, 8)
    calls = []
    real = decode.shared_prefix_decode
    monkeypatch.setattr(decode, "shared_prefix_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(vlm, "share_prefix", True)
    prefills = []
    hook = vlm.model.model.vision_tower.register_forward_hook(lambda m, a, o: prefills.append(a[0].shape[0]))
    try:
        assert vlm.generate(samples, 8) == plain
    finally:
        hook.remove()
    assert calls and prefills == [4], "one image each through the tower, once"
    # with the vision cache as well
    vlm.model.model.vision_tower.requires_grad_(False)
    vlm.enable_vision_cache()
    try:
        assert vlm.generate(samples, 8) == plain
        assert vlm.generate(samples[::-1], 8) == plain[::-1]
    finally:
        vlm.vision_cache = None
        vlm.model.model.vision_tower.requires_grad_(True)


def test_evaluation_keeps_each_images_questions_together_and_the_answers(vlm_and_samples, monkeypatch):
    from coin.engine.evaluate import generate_answers

    vlm, samples = vlm_and_samples
    records = [{"question_id": s.id, "task": "t", "image_path": s.image, "text": s.prompt} for s in samples]
    off = generate_answers(vlm, records, 6, 4, progress=False)
    batches = []
    real = vlm.generate
    monkeypatch.setattr(vlm, "generate", lambda chunk, n: batches.append(chunk) or real(chunk, n))
    monkeypatch.setattr(vlm, "share_prefix", True)
    assert generate_answers(vlm, records, 6, 4, progress=False) == off
    order = [s.image for b in batches for s in b]
    changes = sum(a != b for a, b in zip(order, order[1:]))
    assert changes == len(set(order)) - 1, "an image's questions should be contiguous"
