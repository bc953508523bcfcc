"""A run folder written before the config became open sections (coin 924ee27) resumes after it.

The fixtures are the ``config.yaml`` files that main at 924ee27 wrote for two runs: the
default one and a MoELoRA + EWC micro run. That coin wrote every backbone's and adapter's key
into every config (``model.path: null`` for the tiny model, ``adapter.experts: 8`` for LoRA);
today's writes only the selected entry's. Resuming compares the stored config with today's.
"""

from pathlib import Path

import pytest

from coin.config import read_yaml_mapping
from coin.config_load import from_dict, upgrade
from coin.engine.run_folder import RunFolderError, _diff_keys, prepare_run_dir

FIXTURES = Path(__file__).parent / "fixtures" / "run_924ee27"

# the configs the user wrote for those two runs
USER = {
    "default.config.yaml": {},
    "moelora_ewc.config.yaml": {"name": "micro-moelora", "adapter": {"type": "moelora", "experts": 4, "r": 8},
                                "data": {"synth": {"n_train": 24, "n_test": 8}},
                                "tasks": {"order": ["ScienceQA", "GQA"]}, "model": {"pretrain": {"steps": 5}},
                                "method": "ewc", "method_options": {"lambda_": 10.0}},
}


@pytest.mark.parametrize("name", sorted(USER))
def test_stored_config_of_older_coin_matches_todays(name):
    stored = read_yaml_mapping(FIXTURES / name)
    assert "experts" in stored["adapter"] and "path" in stored["model"]  # the old flat dump
    today = from_dict(USER[name]).to_dict()
    assert _diff_keys(upgrade(stored), today) == []


@pytest.mark.parametrize("name", sorted(USER))
def test_run_folder_of_older_coin_resumes(tmp_path, name):
    (tmp_path / "config.yaml").write_text((FIXTURES / name).read_text())
    prepare_run_dir(tmp_path, from_dict(USER[name]))  # raises RunFolderError when the configs differ
    changed = dict(USER[name], seed=1)
    with pytest.raises(RunFolderError, match="seed"):
        prepare_run_dir(tmp_path, from_dict(changed))


def test_upgrade_keeps_a_set_key_of_another_entry():
    """A stored key that another entry owns but that was set away from its default is a real difference."""
    stored = read_yaml_mapping(FIXTURES / "default.config.yaml")
    stored["adapter"]["experts"] = 4  # not MoELoRA's default: the user meant something
    assert upgrade(stored)["adapter"]["experts"] == 4
    assert [d.split(":")[0] for d in _diff_keys(upgrade(stored), from_dict({}).to_dict())] == ["adapter.experts"]
