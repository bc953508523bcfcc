"""The vision feature cache: same answers, the tower skipped on a hit, cleared when the tower changes,
refused for a trainable tower (coin/models/vision_cache.py)."""

import shutil

import pytest
import torch

from coin.models.vision_cache import VisionCacheRefused, select_features
from coin.data.sample import Sample
from tinyvlm import sharp_vlm_and_samples

PROMPTS = ["Describe.", "What is the object in the image?", "Q " * 12 + "?", "Is there a red circle?", "x",
           "Where is the star?"]


@pytest.fixture()
def vlm_and_samples(tmp_path):
    vlm, samples = sharp_vlm_and_samples(tmp_path / "s", PROMPTS, data_seed=3, model_seed=7)
    vlm.model.model.vision_tower.requires_grad_(False)  # as the adapter leaves it in every recipe
    return vlm, samples


def _tower_calls(vlm):
    calls = []
    vlm.model.model.vision_tower.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    return calls


def test_selected_features_are_what_llava_projects(vlm_and_samples):
    vlm, samples = vlm_and_samples
    px = vlm.pixels(samples[:2])
    with torch.no_grad():
        ours = vlm.model.model.multi_modal_projector(select_features(vlm.model.model, px))
        theirs = torch.stack(vlm.model.model.get_image_features(
            pixel_values=px, vision_feature_layer=vlm.model.config.vision_feature_layer,
            vision_feature_select_strategy=vlm.model.config.vision_feature_select_strategy).pooler_output)
    assert torch.equal(ours, theirs)


def test_cached_answers_equal_uncached_and_the_tower_runs_once_per_image(vlm_and_samples, tmp_path):
    vlm, samples = vlm_and_samples
    plain = vlm.generate(samples, 8)
    calls = _tower_calls(vlm)
    vlm.enable_vision_cache()
    assert vlm.generate(samples, 8) == plain
    assert sum(calls) == len({s.image for s in samples})
    assert vlm.generate(samples, 8) == plain  # a second stage's evaluation: every image a hit
    assert sum(calls) == len({s.image for s in samples})
    # the key is the file's content: the same bytes under another name are a hit
    copy = tmp_path / "copy.png"
    shutil.copy(samples[0].image, copy)
    assert vlm.generate([Sample("c", "t", str(copy), samples[0].prompt)], 8) == plain[:1]
    assert sum(calls) == len({s.image for s in samples})
    assert vlm.vision_cache.hits == len({s.image for s in samples}) + 1


def test_cache_is_cleared_when_the_tower_changes(vlm_and_samples):
    vlm, samples = vlm_and_samples
    vlm.enable_vision_cache()
    vlm.generate(samples, 8)
    assert len(vlm.vision_cache) == len({s.image for s in samples})
    with torch.no_grad():
        for p in vlm.model.model.vision_tower.parameters():
            p.mul_(1.5)  # an in-place change (as load_state_dict or an optimiser step makes)
    vlm.vision_cache.hits = 0
    cached = vlm.generate(samples, 8)
    assert vlm.vision_cache.hits == 0, "features of the old tower were served"
    vlm.vision_cache = None
    assert cached == vlm.generate(samples, 8)


def test_trainable_tower_is_refused(vlm_and_samples):
    vlm, samples = vlm_and_samples
    tower = vlm.model.model.vision_tower
    next(tower.parameters()).requires_grad_(True)
    with pytest.raises(VisionCacheRefused, match="trainable"):
        vlm.enable_vision_cache()
    next(tower.parameters()).requires_grad_(False)
    vlm.enable_vision_cache()
    plain_calls = _tower_calls(vlm)
    next(tower.parameters()).requires_grad_(True)  # trained after the cache was switched on
    with pytest.warns(UserWarning, match="refused"):
        vlm.generate(samples[:2], 4)
    vlm.generate(samples[:2], 4)
    assert len(vlm.vision_cache) == 0 and len(plain_calls) == 2


def test_coin_run_uses_both_by_default_and_the_keys_turn_them_off(micro_config, tmp_path, monkeypatch):
    from coin.config_load import from_dict
    from coin.engine.run import run
    from coin.models.llava.wrapper import LlavaVLM

    seen = []
    real = LlavaVLM.generate

    def spy(self, samples, max_new_tokens):
        seen.append((self.share_prefix, self.vision_cache))
        return real(self, samples, max_new_tokens)

    monkeypatch.setattr(LlavaVLM, "generate", spy)
    micro_config["tasks"]["order"] = ["ImageNet"]
    run(from_dict(micro_config), tmp_path / "on", progress=False, log=lambda *a: None)
    assert all(share for share, _ in seen)
    cache = seen[-1][1]  # off for the zero-shot evaluation (the tower trains nothing only once the adapter is on)
    assert cache is not None and cache.hits + cache.misses > 0 and len(cache) > 0
    seen.clear()
    micro_config["eval"].update(share_prefix=False, cache_vision=False)
    run(from_dict(micro_config), tmp_path / "off", progress=False, log=lambda *a: None)
    assert seen and all(not share and cache is None for share, cache in seen)
