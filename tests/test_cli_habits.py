"""The command line's habits from the field (#33 point 4): bare ``key=value`` overrides as Hydra and
torchtune take them, ``~key`` to remove a key, ``--seed``, ``coin --version``, a finished run's
status with its result, and ``coin data check`` with no arguments checking what ``coin run`` runs."""

from __future__ import annotations

import json

import pytest
import yaml

from coin import __version__
from coin.cli import main, parse_args
from coin.cli.flags import overrides
from coin.cli.run import _split_sweep_words
from coin.config import ConfigError
from coin.config_load import load_config


def _overrides(*argv: str) -> list[str]:
    return overrides(parse_args(list(argv)))


def test_bare_words_set_keys_like_set_and_seed_sets_the_seed():
    words = _overrides("run", "train.lr=3e-4", "--set", "train.epochs=2", "eval.batch_size=4", "--seed", "7")
    assert words == ["train.epochs=2", "train.lr=3e-4", "eval.batch_size=4", "seed=7"]
    cfg = load_config(None, words)
    assert (cfg.train.lr, cfg.train.epochs, cfg.eval.batch_size, cfg.seed) == (3e-4, 2, 4, 7)
    assert _overrides("model", "prepare", "model.tiny.lm_width=48") == ["model.tiny.lm_width=48"]
    assert _overrides("data", "check", "data.instructions=diverse") == ["data.instructions=diverse"]


def test_a_bare_word_that_is_no_override_is_named():
    with pytest.raises(ConfigError, match="'trainlr' is not an override"):
        _overrides("run", "trainlr")
    assert main(["run", "trainlr", "--dry-run"]) == 2
    with pytest.raises(SystemExit):  # an unknown option stays an argparse error
        parse_args(["run", "--sed", "3"])
    with pytest.raises(SystemExit):  # a command without overrides takes no such words
        parse_args(["status", "runs/x", "train.lr=1"])


@pytest.fixture
def pretrain_config(tmp_path):
    """A shipped-style config for the parts-assembled LLaVA (model.lm_path & co.)."""
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "llava-pretrain", "lm_path": "lm", "vision_path": "clip",
                                              "projector_path": "mm_projector.bin"}, "train": {"lr": 2e-4}}))
    return path


def test_tilde_removes_a_key_so_a_config_switches_backbone(pretrain_config):
    switch = ["model.name=llava", "model.path=some/llava-hf"]
    with pytest.raises(ConfigError, match="unknown key 'model.lm_path'"):
        load_config(pretrain_config, switch)
    cfg = load_config(pretrain_config, switch + ["~model.lm_path", "~model.vision_path", "~model.projector_path"])
    assert cfg.model.name == "llava" and cfg.train.lr == 2e-4
    # applied in order: a key removed then set again is set; set then removed is gone
    cfg = load_config(pretrain_config, ["~train.lr", "train.lr=1e-3"])
    assert cfg.train.lr == 1e-3
    assert load_config(pretrain_config, ["train.lr=1e-3", "~train.lr"]).train.lr == load_config(None).train.lr


def test_tilde_on_a_key_the_config_does_not_set_is_named(pretrain_config):
    with pytest.raises(ConfigError, match=r"~model.lmpath: the config does not set model.lmpath"):
        load_config(pretrain_config, ["~model.lmpath"])
    with pytest.raises(ConfigError, match="takes no value"):
        load_config(pretrain_config, ["~train.lr=1"])


def test_sweep_takes_override_words_among_its_configs(tmp_path):
    config = tmp_path / "a.yaml"
    config.write_text("train: {lr: 0.001}\n")
    assert _split_sweep_words([str(config), "train.lr=5e-4", "~eval.judge"]) == ([str(config)], ["train.lr=5e-4", "~eval.judge"])
    with pytest.raises(ConfigError, match="at least one config"):
        _split_sweep_words(["train.lr=5e-4"])


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"coin {__version__}"


def test_data_check_with_no_arguments_checks_what_coin_run_runs(capsys):
    assert main(["data", "check", "--quick", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    default = load_config(None)
    from coin.tasks.orders import resolve_order

    assert [t["task"] for t in checked["tasks"]] == resolve_order(default.tasks.order)


def test_a_run_with_bare_overrides_records_them_and_its_status_leads_with_the_result(tmp_path, micro_config, capsys):
    micro_config["eval"].update(zero_shot=True, bootstrap=0)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(micro_config))
    out = tmp_path / "run"
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(out), "--quiet", "train.lr=2e-3",
                 "--seed", "5"]) == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["train"]["lr"] == 2e-3 and recorded["seed"] == 5
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads((out / "matrix.json").read_text())
    m = result["metrics"]
    assert f"MAA {m['maa']:.2f}  BWT {m['bwt']:.2f}  ACC {m['acc']:.2f}" in text
    assert f"report: {out / 'report.md'}" in text
    zero = next(line for line in text.splitlines() if line.strip().startswith("zero-shot"))
    assert [float(v) for v in zero.split()[1:]] == [round(v, 1) for v in result["zero_shot"]]
