"""Packaging: the distribution's name, the configs shipped in the package, and where a config's relative paths point.

- every install hint names the distribution pip knows (``coin-cl``; PyPI's ``coin`` is another package);
- the shipped configs are in the wheel and addressable by name from any folder (``coin run --config
  coin/llava-1.5-7b/lora``), ``coin cp`` copies one to edit, ``coin ls configs`` lists them;
- relative paths in a config of one's own are read against its folder; in a shipped config, against
  the working directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from coin import DISTRIBUTION, install_hint, shipped
from coin.cli import main
from coin.config import ConfigError
from coin.config_load import load_config

REPO = Path(__file__).resolve().parents[1]


def test_the_distribution_name_is_the_one_every_install_hint_uses():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "coin-cl"
    assert install_hint("wandb") == "pip install 'coin-cl[wandb]'"
    stale = []
    for path in [*REPO.joinpath("coin").rglob("*.py"), REPO / "README.md", *REPO.joinpath("docs").rglob("*.md")]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"pip install '?coin\[", line):
                stale.append(f"{path.relative_to(REPO)}:{n}")
    assert stale == []


def test_the_package_data_patterns_name_files_that_exist_and_the_wheel_ships_the_configs(tmp_path):
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["coin"]
    for pattern in patterns:
        assert list((REPO / "coin").glob(pattern)), pattern
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("coin_cl-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    for name in ("synth/lora", "coin/llava-1.5-7b/lora", "ucit/olora", "mllm-cl/dcl-lora"):
        assert f"coin/configs/{name}.yaml" in inside
    if (REPO / "coin" / "models" / "tiny" / "base" / "SHIPPED.json").is_file():  # the pretrained tiny base ships too
        assert {"coin/models/tiny/base/SHIPPED.json", "coin/models/tiny/base/model.safetensors"} <= inside
    assert len([n for n in inside if n.startswith("coin/configs/") and n.endswith(".yaml")]) == len(
        list((REPO / "coin" / "configs").rglob("*.yaml")))


def test_a_shipped_config_runs_by_name_from_any_folder_with_placeholders_read_against_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "coin/llava-1.5-7b/lora" in shipped.names() and "synth/lora" in shipped.names()
    cfg = load_config("coin/llava-1.5-7b/lora")
    assert cfg.model.name == "llava-pretrain" and cfg.data.root == "data/CoIN"  # the working directory's data/CoIN
    assert load_config("configs/synth/olora.yaml").method == "olora"  # the clone's spelling works from anywhere
    with pytest.raises(ConfigError, match="does not exist, and no shipped config has that name; did you mean coin/llava-1.5-7b/lora"):
        load_config("coin/llava-1.5-7b/lorra")


def test_coin_cp_copies_a_shipped_config_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["cp", "ucit/olora", "mine/"]) == 0
    copy = tmp_path / "mine" / "olora.yaml"
    assert copy.read_text(encoding="utf-8") == (shipped.ROOT / "ucit" / "olora.yaml").read_text(encoding="utf-8")
    assert main(["cp", "ucit/olora", "mine/"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["cp", "ucit/olora", "mine/", "--force"]) == 0
    # the copy is a file of the user's: its placeholders are now read against its folder
    assert load_config(copy).data.root == str(tmp_path / "mine" / "data" / "UCIT")
    capsys.readouterr()
    assert main(["ls", "configs"]) == 0
    listed = capsys.readouterr().out
    assert "  synth/lora\n" in listed and "  coin/qwen2-vl-7b/lora\n" in listed


def test_relative_paths_in_a_config_of_ones_own_are_read_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "weights" / "lm").mkdir(parents=True)
    (folder / "my_method.py").write_text("# a plugin that registers nothing\n", encoding="utf-8")
    (folder / "run.yaml").write_text(
        "plugins: [my_method.py, coin.methods]\n"
        "data: {benchmark: synth, root: data, image_root: /abs/images}\n"
        "model: {name: llava-pretrain, vision_path: openai/clip-vit-large-patch14-336, lm_path: weights/lm, "
        "projector_path: /abs/mm_projector.bin}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(folder / "run.yaml", ["data.image_root=imgs"])
    assert cfg.plugins == [str(folder / "my_method.py"), "coin.methods"]  # a module name stays a module name
    assert cfg.data.root == str(folder / "data")
    assert cfg.data.image_root == "imgs"  # typed on the command line: the working directory's
    assert cfg.model.options.vision_path == "openai/clip-vit-large-patch14-336"  # none beside the config: a hub id
    assert cfg.model.options.lm_path == str(folder / "weights" / "lm")
    # the example benchmark's config names its plugin beside it, so it runs from any folder
    assert load_config(REPO / "examples" / "shapes.yaml").data.benchmark == "shapes"
