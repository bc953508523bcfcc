"""Test images are decoded and preprocessed ahead of their batch (#30, point 6; ``LlavaVLM.prefetch``).

While the model answers one batch, a thread prepares the next batch's pixels; the answers are the
ones of an evaluation without it, each image is decoded once even when the pixel cache has no room,
and a bad image still stops the evaluation naming its record, with the answers before it kept.
"""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image

import coin.models.llava.wrapper as vlm_module
from coin.engine.evaluate import generate_answers
from coin.models.images import ImageError
from tinyvlm import records_of as _records, tiny_samples, tiny_vlm


@pytest.fixture
def decodes(monkeypatch):
    """The thread names that decoded an image, one entry per decode."""
    seen: list[str] = []
    real = vlm_module.load_image

    def spy(path, record_id="?"):
        seen.append(threading.current_thread().name)
        return real(path, record_id)

    monkeypatch.setattr(vlm_module, "load_image", spy)
    return seen


def test_prefetched_answers_equal_the_plain_ones_and_are_decoded_ahead(tmp_path, decodes):
    records = _records(tiny_samples(tmp_path, "GQA", 5) + tiny_samples(tmp_path, "VQA", 2))
    plain_vlm = tiny_vlm()
    plain_vlm.prefetch = None  # an evaluation without the thread
    plain = generate_answers(plain_vlm, records, 4, 2, progress=False)
    assert decodes and all(not name.startswith("coin-prefetch") for name in decodes)
    decodes.clear()
    ahead = generate_answers(tiny_vlm(), records, 4, 2, progress=False)
    assert ahead == plain and len(ahead) == 7
    assert len(decodes) == 7 and all(name.startswith("coin-prefetch") for name in decodes), decodes


def test_each_image_is_decoded_once_even_when_the_cache_has_no_room(tmp_path, decodes):
    vlm = tiny_vlm()
    vlm._pixel_cache.max_bytes = 0  # model.image_cache_mb 0: nothing is kept
    generate_answers(vlm, _records(tiny_samples(tmp_path, "GQA", 6)), 4, 2, progress=False)
    assert len(decodes) == 6 and not vlm._prefetched


def test_a_bad_image_stops_the_evaluation_naming_it_and_keeps_the_answers_before(tmp_path):
    samples = tiny_samples(tmp_path, "GQA", 4)
    Image.new("RGB", (4, 4)).save(tmp_path / "other.png")
    (tmp_path / "GQA-3.png").write_bytes(b"not an image")
    partial = tmp_path / "GQA.rank0.partial.jsonl"
    with pytest.raises(ImageError, match="GQA-3"):
        generate_answers(tiny_vlm(), _records(samples), 4, 2, progress=False, partial=partial)
    kept = [json.loads(line)["question_id"] for line in partial.read_text().splitlines()]
    assert len(kept) == 2 and "GQA-3" not in kept  # the first batch answered and stored
