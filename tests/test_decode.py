"""coin's greedy decoding (preallocated KV cache, finished rows dropped) against ``model.generate``."""

from types import SimpleNamespace

import pytest
import torch

import coin.models.decode as decode
from coin.models.kv_cache import PreallocatedLayer, cache_for, cache_kwargs, preallocated_cache
from coin.data.sample import Sample
from tinyvlm import sharp_vlm_and_samples


@pytest.fixture(scope="module")
def vlm_and_batch(tmp_path_factory):
    prompts = ["Describe.", "What is the object in the image?", "Q " * 30 + "?", "Is there a red circle?", "x",
               "A much longer question about the picture, " * 3, "Colour?", "Where is the star?"]
    vlm, samples = sharp_vlm_and_samples(tmp_path_factory.mktemp("d") / "s", prompts, data_seed=2, model_seed=5)
    return vlm, vlm.generation_batch(samples)


def _hf(vlm, batch, max_new, eos):
    out = vlm.model.generate(**batch, max_new_tokens=max_new, do_sample=False, num_beams=1, eos_token_id=eos,
                             pad_token_id=vlm.tokenizer.pad_token_id)
    rows = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def _staggered_eos(rows):
    """A token that ends some rows early and others late or never: rows then finish at different steps."""
    best = None
    for tok in {t for r in rows for t in r}:
        firsts = [r.index(tok) if tok in r else len(r) for r in rows]
        spread = len(set(firsts))
        if min(firsts) < len(rows[0]) - 2 and (best is None or spread > best[0]):
            best = (spread, tok)
    assert best is not None and best[0] >= 3, "the tiny model should give a token that ends rows at different steps"
    return best[1]


@pytest.mark.parametrize("compact_at", [0.0, 0.25, 1.0])
def test_same_tokens_as_generate_when_rows_end_at_different_steps(vlm_and_batch, monkeypatch, compact_at):
    vlm, batch = vlm_and_batch
    free = _hf(vlm, batch, 12, eos=-1)  # no stop: every row runs 12 tokens
    eos = _staggered_eos(free)
    expected = _hf(vlm, batch, 12, eos)
    assert len({len(r) for r in expected}) >= 3

    caches = []
    real = decode.preallocated_cache

    def spy(model, capacity):
        caches.append(real(model, capacity))
        return caches[-1]

    monkeypatch.setattr(decode, "preallocated_cache", spy)
    got = decode.greedy_decode(vlm.model, batch, 12, [eos], compact_at=compact_at)
    assert got == expected
    live = caches[0].layers[0].keys.shape[0]
    if compact_at < 1.0:
        assert live < len(expected), "finished rows should have been dropped from the cache"
    else:
        assert live == len(expected)


def test_answers_equal_generate_on_every_row_and_stop_at_max(vlm_and_batch):
    vlm, batch = vlm_and_batch
    eos = vlm.tokenizer.eos_token_id
    assert decode.greedy_decode(vlm.model, batch, 7, [eos]) == _hf(vlm, batch, 7, eos)
    assert all(len(r) <= 7 for r in decode.greedy_decode(vlm.model, batch, 7, [eos]))
    assert decode.greedy_decode(vlm.model, batch, 0, [eos]) == [[] for _ in range(batch["input_ids"].shape[0])]


def test_vlm_decodings_agree_and_bad_name_is_named(vlm_and_batch, tmp_path):
    vlm, _ = vlm_and_batch
    from coin.benchmarks.synth.generator import generate as gen

    root = gen(tmp_path / "s", seed=4, n_train=2, n_test=0, n_pretrain=6)
    import json

    caps = json.loads((root / "pretrain" / "train.json").read_text())
    samples = [Sample(f"v{k}", "t", str(root / "images" / c["image"]), "Describe " * (k + 1)) for k, c in enumerate(caps)]
    coin_answers = vlm.generate(samples, 10)
    vlm.decoding = "hf"
    try:
        assert vlm.generate(samples, 10) == coin_answers
        vlm.decoding = "beam"
        with pytest.raises(ValueError, match="unknown decoding 'beam'; choices: coin, hf"):
            vlm.generate(samples, 10)
    finally:
        vlm.decoding = "coin"


def test_preallocated_cache_grows_when_the_plan_is_too_small(vlm_and_batch):
    vlm, batch = vlm_and_batch
    eos = vlm.tokenizer.eos_token_id
    cache = preallocated_cache(vlm.model, capacity=3)
    out = vlm.model.generate(**batch, max_new_tokens=6, do_sample=False, num_beams=1, eos_token_id=eos,
                             pad_token_id=vlm.tokenizer.pad_token_id, **cache_kwargs(cache))
    ref = vlm.model.generate(**batch, max_new_tokens=6, do_sample=False, num_beams=1, eos_token_id=eos,
                             pad_token_id=vlm.tokenizer.pad_token_id)
    assert torch.equal(out, ref)
    layer = cache.layers[0]
    assert isinstance(layer, PreallocatedLayer)
    assert layer._k.shape[-2] >= layer.get_seq_length() > 3


def test_layer_update_crop_and_select_keep_the_right_entries():
    layer = PreallocatedLayer(capacity=4)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
    keys, values = layer.update(k, -k)
    assert torch.equal(keys, k) and torch.equal(values, -k) and layer.get_seq_length() == 3
    step = torch.full((2, 1, 1, 2), 100.0)
    keys, _ = layer.update(step, step)
    assert torch.equal(keys, torch.cat([k, step], dim=2))
    layer.crop(-2)
    assert torch.equal(layer.keys, k[:, :, :2])
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, k[1:, :, :2])
    keys, _ = layer.update(step[1:], step[1:])  # past the first capacity again after the select
    keys, _ = layer.update(step[1:].repeat(1, 1, 3, 1), step[1:].repeat(1, 1, 3, 1))
    assert keys.shape == (1, 1, 6, 2) and torch.equal(keys[:, :, :2], k[1:, :, :2])
    with pytest.raises(ValueError, match="negative"):
        layer.crop(1)


def test_models_with_other_cache_layers_keep_hf_cache():
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, sliding_window=4)
    model = MistralForCausalLM(cfg)
    assert preallocated_cache(model, 10) is None
    assert preallocated_cache(SimpleNamespace(config=SimpleNamespace()), 10) is None  # a config it cannot read
    assert cache_for(model, "preallocated", 5, 5) == {}
    with pytest.raises(ValueError, match="unknown kv cache 'static'"):
        cache_for(model, "static", 5, 5)
