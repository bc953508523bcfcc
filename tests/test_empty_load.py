"""#30.8: a process that receives its weights builds the model empty (``coin.models.empty``).

Each backbone that declares ``loads_empty`` builds, inside ``empty_weights()``, the model its
``load`` would read, on the meta device (no weights read): the same parameters and buffers, in
the same dtypes, in evaluation mode, with the folder's generation config. Given the main
process's weights and buffers (what ``coin.engine.weights_from_main`` sends) it answers as the
model that read them. The launched runs are in tests/test_distributed.py and tests/test_fsdp.py.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import tinyhf
from coin.config_load import section
from coin.data.sample import Sample
from coin.models import BACKBONES, load_model
from coin.models.empty import building_empty, empty_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("empty")
    return {"qwen2-vl": tinyhf.build_qwen2_vl(root / "qwen2-vl"), "hf": tinyhf.build_qwen2_vl(root / "hf"),
            "llava": tinyhf.build_llava(root / "llava")}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "0.png"
    g = torch.Generator().manual_seed(0)
    Image.fromarray((torch.rand(64, 48, 3, generator=g) * 255).to(torch.uint8).numpy()).save(path)
    return str(path)


def test_the_context_is_off_outside_its_block():
    assert not building_empty()
    with empty_weights():
        assert building_empty()
        with empty_weights(False):
            assert not building_empty()
    assert not building_empty()


@pytest.mark.parametrize("name", ["llava", "qwen2-vl", "hf"])
def test_an_empty_build_is_the_loaded_model_without_its_weights(name, folders, image):
    assert BACKBONES.get(name).loads_empty
    cfg = section("model", name=name, path=str(folders[name]))
    full = load_model(cfg, log=lambda m: None)
    with empty_weights():
        empty = load_model(cfg, log=lambda m: None)
    params = dict(empty.model.named_parameters())
    assert params and all(p.is_meta for p in params.values())
    assert {n: (p.shape, p.dtype) for n, p in params.items()} == \
           {n: (p.shape, p.dtype) for n, p in full.model.named_parameters()}
    assert [n for n, _ in empty.model.named_buffers()] == [n for n, _ in full.model.named_buffers()]
    assert not empty.model.training and not full.model.training
    assert empty.model.generation_config.to_dict() == full.model.generation_config.to_dict()

    # what weights_from_main does: memory on the device, then the main process's weights and buffers
    empty.model.to_empty(device="cpu")
    sent = dict(full.model.named_parameters()) | dict(full.model.named_buffers())
    with torch.no_grad():
        for n, t in list(empty.model.named_parameters()) + list(empty.model.named_buffers()):
            t.copy_(sent[n])
    samples = [Sample("q0", "t", image, "What is in the image?"), Sample("q1", "t", image, "Name the colour.")]
    assert empty.generate(samples, 6) == full.generate(samples, 6)


def test_a_backbone_that_cannot_build_empty_says_so():
    """Backbones that load through their own code (not coin.models.empty) keep reading weights in every process."""
    declared = {name: BACKBONES.get(name).loads_empty for name in BACKBONES.names()}
    assert declared["tiny"] and declared["llava"]
    assert not declared["minigpt-v2"] and not declared["qwen-vl-chat"]
