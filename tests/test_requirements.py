"""A package below coin's requirements is named before a run starts (coin.requirements).

Seen on the GPU image this project is lent: transformers 5.17.0 with the checkout on PYTHONPATH. coin's
training forward (``train.logits: labelled``) then failed after the model loaded, with
``IndexError: too many indices for tensor of dimension 3`` in transformers' LM head and nothing that
named the package. Now ``coin run`` refuses at once (exit 2) with the package, the version it needs and
the pip command; ``coin run --dry-run`` lists it with the missing files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coin import requirements
from coin.cli import main
from coin.errors import RequirementsError

REPO = Path(__file__).resolve().parents[1]
NEEDS = ("torch>=2.1", "transformers>=5.21,<6", "peft>=0.17", "tomli>=1.1; python_version < '3.0'")


def versions(**have):
    """An installed-version lookup: the given ones, the rest current enough."""
    base = {"torch": "2.13.0+cpu", "transformers": "5.25.0", "peft": "0.21.2", "tomli": None}
    base.update({k.replace("_", "-"): v for k, v in have.items()})
    return base.get


def test_the_requirements_are_read_from_the_checkout_s_pyproject():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is new in 3.11")
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert requirements.declared() == tuple(project["dependencies"])
    assert any(r.startswith("transformers") for r in requirements.declared())


def test_an_environment_within_the_requirements_has_nothing_unmet():
    assert requirements.unmet(NEEDS, versions()) == []
    assert requirements.unmet(NEEDS, versions(torch="2.11.0+cu130")) == []  # a CUDA build's local label
    assert requirements.unmet() == []  # this environment: the suite runs within coin's requirements


def test_each_unmet_requirement_is_named_with_its_version_and_the_fix():
    lines = requirements.unmet(NEEDS, versions(transformers="5.17.0", peft=None))
    assert lines == [
        "transformers 5.17.0 is installed; coin needs transformers<6,>=5.21 "
        "(train.logits: labelled passes a boolean logits_to_keep, new in 5.21)",
        "peft is not installed; coin needs peft>=0.17",
    ]
    assert requirements.unmet(NEEDS, versions(transformers="6.0.0")) != []  # above the tested range too
    assert requirements.install_line(NEEDS, versions(transformers="5.17.0")) == "pip install 'transformers<6,>=5.21'"


def test_check_raises_unless_told_to_run_anyway(monkeypatch):
    with pytest.raises(RequirementsError, match=r"transformers 5\.17\.0 is installed[\s\S]*pip install"):
        requirements.check(NEEDS, versions(transformers="5.17.0"))
    monkeypatch.setenv(requirements.IGNORE_VARIABLE, "1")
    said = []
    requirements.check(NEEDS, versions(transformers="5.17.0"), log=said.append)
    assert said and "transformers 5.17.0" in said[0]


@pytest.fixture
def old_transformers(monkeypatch):
    real = requirements.installed_version
    monkeypatch.setattr(requirements, "installed_version",
                        lambda name: "5.17.0" if name == "transformers" else real(name))


def test_coin_run_refuses_an_old_transformers_before_it_writes_anything(old_transformers, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "transformers 5.17.0 is installed; coin needs transformers<6,>=5.21" in err
    assert "pip install 'transformers<6,>=5.21'" in err
    assert not out.exists()


def test_the_dry_run_lists_an_unmet_requirement_with_the_missing_files(old_transformers, capsys):
    assert main(["run", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "packages: transformers 5.17.0 is installed" in out
    assert "MISSING (1):\n  package: transformers 5.17.0 is installed" in out


def test_the_dry_run_says_the_requirements_are_met(capsys):
    assert main(["run", "--dry-run"]) == 0
    assert "packages: coin's requirements are met" in capsys.readouterr().out


def test_dependencies_are_read_without_a_toml_parser():
    text = '''[project]
name = "coin-cl"
dependencies = [
  "torch>=2.1",
  # a comment with "quotes>=1" in it
  "transformers>=5.21,<6",  # trailing "note"
]

[project.optional-dependencies]
judge = ["openai>=1.0"]
'''
    assert requirements.pyproject_dependencies(text) == ["torch>=2.1", "transformers>=5.21,<6"]
