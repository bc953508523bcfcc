import pytest

from coin.config import ConfigError, RunConfig, dump_config, parse_overrides
from coin.config_load import from_dict, load_config


def test_defaults_are_valid():
    cfg = from_dict({})
    bare = RunConfig()
    assert (cfg.train, cfg.data, cfg.eval, cfg.tasks) == (bare.train, bare.data, bare.eval, bare.tasks)
    assert cfg.tasks.order == "paper" and cfg.method == "sequential"
    # the open sections hold their entry's parsed options, defaults filled in
    assert cfg.model.options.pretrain.steps == 900 and cfg.to_dict()["model"]["image_cache_mb"] == 2048
    assert "experts" not in cfg.to_dict()["adapter"]  # LoRA has no experts


def test_open_sections_take_their_entrys_keys_flat():
    """``adapter.experts`` belongs to MoELoRA and ``model.path`` to the real backbones: YAML keys as before."""
    cfg = from_dict({"adapter": {"type": "moelora", "experts": 4, "r": 8}})
    assert cfg.adapter.options.experts == 4 and cfg.to_dict()["adapter"]["experts"] == 4
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"experts": 4}, "model": {"name": "llava", "pretrain": {"steps": 3}}})
    msg = str(e.value)
    assert "unknown key 'adapter.experts' for adapter.type 'lora': it is an option of 'moelora'" in msg
    assert "unknown key 'model.pretrain' for model.name 'llava': it is an option of 'tiny'" in msg
    assert "model.path is required" in msg
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"type": "moelora", "experts": 3, "r": 8}, "model": {"pretrain": {"stepz": 3}}})
    msg = str(e.value)
    assert "adapter.r (8) must be divisible by adapter.experts (3)" in msg
    assert "unknown key 'model.pretrain.stepz' (did you mean 'model.pretrain.steps'?)" in msg


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"lrr": 1e-4}})
    assert "unknown key 'train.lrr'" in str(e.value)
    assert "did you mean 'train.lr'" in str(e.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"lr": -1, "batch_size": "big"}, "data": {"volume": 2.0}, "method": "ewk"})
    msg = str(e.value)
    assert "train.batch_size must be int, got 'big'" in msg
    # the type error stops validation of values; fix it and the rest is reported together
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"lr": -1}, "data": {"volume": 2.0}, "method": "sequentail"})
    msg = str(e.value)
    assert "train.lr must be > 0, got -1" in msg
    assert "data.volume must be in (0, 1], got 2.0" in msg
    assert "Did you mean 'sequential'" in msg
    assert len(e.value.problems) == 3


def test_task_order_is_checked():
    with pytest.raises(ConfigError) as e:
        from_dict({"tasks": {"order": ["GQA", "VQAv3"]}})
    assert "VQAv3" in str(e.value) and "Did you mean 'VQAv2'" in str(e.value)
    assert from_dict({"tasks": {"order": "alphabet"}}).tasks.order == "alphabet"


def test_overrides_parse_as_yaml_and_merge(tmp_path):
    assert parse_overrides(["train.lr=0.5", "tasks.order=[GQA, VizWiz]"]) == {
        "train": {"lr": 0.5}, "tasks": {"order": ["GQA", "VizWiz"]}}
    # YAML 1.1 reads 1e-4 as a string; a float key takes it as the number
    assert from_dict(parse_overrides(["train.lr=1e-4"])).train.lr == 1e-4
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 0.01\n  batch_size: 4\n")
    cfg = load_config(p, ["train.lr=0.02"])
    assert cfg.train.lr == 0.02 and cfg.train.batch_size == 4


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_dump_round_trips(tmp_path):
    cfg = from_dict({"seed": 3, "tasks": {"order": ["GQA", "OCR-VQA"]}})
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_shipped_lora_config_is_the_default_experiment():
    """`coin run` without --config must be exactly configs/synth/lora.yaml (apart from its name)."""
    from pathlib import Path

    shipped = load_config(Path(__file__).parent.parent / "configs" / "synth" / "lora.yaml")
    shipped.name = None
    assert shipped == from_dict({})


def test_every_shipped_config_is_valid():
    from pathlib import Path

    root = Path(__file__).parent.parent / "configs"
    paths = sorted(p for p in root.rglob("*.yaml") if "accelerate" not in p.parts)  # those are launcher configs
    assert len(paths) >= 9 + 26
    for p in paths:
        load_config(p)


def test_a_run_folder_from_before_a_key_existed_resumes_and_groups(tmp_path):
    """Upgrading coin adds config keys; an older run folder must neither refuse to resume nor
    split from today's runs in a comparison (and a real change is still caught)."""
    import yaml

    from coin.config_load import from_dict, upgrade
    from coin.engine.run_folder import RunFolderError, prepare_run_dir

    full = from_dict({}).to_dict()
    old = yaml.safe_load(yaml.safe_dump(full))
    del old["model"]["dtype"], old["model"]["gradient_checkpointing"]  # an older coin had neither
    old["model"]["legacy_key"] = 1  # an unknown key survives
    merged = upgrade(old)
    assert merged["model"]["dtype"] == "auto" and merged["model"]["legacy_key"] == 1
    assert {k: v for k, v in merged.items()} != full  # the unknown key keeps it distinct
    del old["model"]["legacy_key"]
    assert upgrade(old) == full
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    prepare_run_dir(tmp_path, from_dict({}))  # no complaint
    with pytest.raises(RunFolderError, match="train.lr"):
        prepare_run_dir(tmp_path, from_dict({"train": {"lr": 1e-4}}))


def test_a_damaged_run_folder_config_is_named(tmp_path):
    from coin.config_load import from_dict
    from coin.engine.run_folder import prepare_run_dir

    (tmp_path / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"config.yaml.*\n.*top level must be a mapping"):
        prepare_run_dir(tmp_path, from_dict({}))
    (tmp_path / "config.yaml").write_text("train: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        prepare_run_dir(tmp_path, from_dict({}))


def test_an_unknown_option_is_said_of_the_entry_users_named():
    """Errors name the method, adapter or backbone the user wrote, not the options class behind it."""
    with pytest.raises(ConfigError) as e:
        from_dict({"adapter": {"type": "moelora", "expertz": 4}, "method": "ewc", "method_options": {"lamda_": 1.0},
                   "model": {"widht": 3}})
    msg = str(e.value)
    assert "(did you mean 'adapter.experts'?); adapter 'moelora' takes: experts" in msg
    assert "(did you mean 'method_options.lambda_'?); method 'ewc' takes: samples, lambda_" in msg
    assert "unknown key 'model.widht'; backbone 'tiny' takes: tiny, pretrain, image_cache_mb" in msg
    assert "Options takes" not in msg


def test_a_typo_of_a_common_key_in_an_open_section_is_still_suggested():
    """``model.dtyp`` is collected as the backbone's own key, yet the hint names the common ``model.dtype``."""
    with pytest.raises(ConfigError) as e:
        from_dict({"model": {"dtyp": "bf16"}, "adapter": {"type": "moelora", "dropuot": 0.1}})
    msg = str(e.value)
    assert "unknown key 'model.dtyp' (did you mean 'model.dtype'?)" in msg
    assert "unknown key 'adapter.dropuot' (did you mean 'adapter.dropout'?)" in msg
