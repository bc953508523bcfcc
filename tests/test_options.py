"""The one options builder (``coin.options``): what every config section, method, adapter, backbone
and judge backend relies on when a user's mapping becomes a typed dataclass.

Tiny dataclasses defined here stand for an entry's ``Options``; the last tests hold every
registered method to the contract (an ``Options`` dataclass, a docstring, valid defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from coin.options import (
    NoOptions, OptionsError, build, closest, describe, flat_dict, option_problems, parse, suggest,
)


@dataclass
class Optim:
    """A nested section."""

    lr: float = 1e-3  # the step size
    betas: list = field(default_factory=lambda: [0.9, 0.999])

    def check(self) -> list[str]:
        return [f"lr must be > 0, got {self.lr}"] if self.lr <= 0 else []


@dataclass
class Train:
    """A section with a nested one, every kind of key, and a value check."""

    epochs: int = 1  # passes over the data
    shuffle: bool = True
    name: str = "run"
    limit: int | None = None  # None: no limit
    # a key documented by the comment block above it,
    # over two lines
    per_task: dict = field(default_factory=dict)
    optim: Optim = field(default_factory=Optim)

    def check(self) -> list[str]:
        return [f"epochs must be >= 1, got {self.epochs}"] if self.epochs < 1 else []


@dataclass
class Section:
    """An open section: keys that are not its fields are collected for the entry it selects."""

    __open__ = "options"

    type: str = "lora"
    r: int = 8
    options: Any = field(default_factory=dict)


def test_unknown_keys_name_the_full_dotted_key_and_the_nearest_one():
    problems = option_problems(Train, {"epoch": 2, "optim": {"lrr": 0.1}}, "train.")
    assert problems[0].startswith("unknown key 'train.epoch' (did you mean 'train.epochs'?); Train takes: epochs,")
    assert problems[1].startswith("unknown key 'train.optim.lrr' (did you mean 'train.optim.lr'?)")
    assert option_problems(NoOptions, {"x": 1}, "method_options.") == [
        "unknown key 'method_options.x'; NoOptions takes no options"]
    assert closest("lamda_", ["lambda_", "samples"]) == "lambda_" and closest("zzz", ["lambda_"]) is None
    assert suggest("lamda_", ["lambda_"], "m.") == " (did you mean 'm.lambda_'?)" and suggest("zzz", ["a"]) == ""


def test_nested_sections_are_built_from_mappings_with_their_own_keys():
    t = build(Train, {"optim": {"lr": 1, "betas": [0.5, 0.5]}})
    assert isinstance(t.optim, Optim) and t.optim.lr == 1.0 and isinstance(t.optim.lr, float)
    assert t.optim.betas == [0.5, 0.5] and t.epochs == 1  # what is not given keeps its default
    assert option_problems(Train, {"optim": 3}, "train.") == ["train.optim must be a mapping, got int"]


@pytest.mark.parametrize("data, problem", [
    ({"epochs": True}, "train.epochs must be int, got True"),  # a bool is not an int
    ({"epochs": 2.0}, "train.epochs must be int, got 2.0"),
    ({"shuffle": 1}, "train.shuffle must be bool, got 1"),
    ({"name": 3}, "train.name must be str, got 3"),
    ({"limit": "10"}, "train.limit must be int or null, got '10'"),
    ({"per_task": [1]}, "train.per_task must be dict, got [1]"),
    ({"optim": {"betas": "0.9"}}, "train.optim.betas must be list, got '0.9'"),
    ({"optim": {"lr": "fast"}}, "train.optim.lr must be float, got 'fast'"),
])
def test_types_are_checked_with_the_key_and_the_value(data, problem):
    assert option_problems(Train, data, "train.") == [problem]


def test_numbers_are_read_as_users_mean_them():
    t = build(Train, {"limit": None, "optim": {"lr": 2}})
    assert t.limit is None and t.optim.lr == 2.0 and isinstance(t.optim.lr, float)  # an int is a float
    assert build(Train, {"optim": {"lr": "1e-4"}}).optim.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    assert build(Train, {"name": "1e5"}).name == "1e5"  # a key that takes strings keeps the user's string


def test_checks_run_per_section_with_their_keys_prefixed_and_every_problem_is_listed_at_once():
    problems = option_problems(Train, {"epochs": 0, "optim": {"lr": -1}, "bogus": 1, "name": 5}, "train.")
    assert "train.optim.lr must be > 0, got -1.0" in problems  # the nested section's own check, its full key
    assert "train.name must be str, got 5" in problems
    assert any(p.startswith("unknown key 'train.bogus'") for p in problems)
    # a value that did not fit keeps its default, so the section's own check would judge the wrong value
    assert not any(p.startswith("train.epochs") for p in problems)
    assert option_problems(Train, {"epochs": 0}, "train.") == ["train.epochs must be >= 1, got 0"]
    with pytest.raises(OptionsError) as e:
        parse(Train, {"epochs": 0, "optim": {"lr": 0}}, "train.", what="train options")
    assert e.value.problems == ["train.optim.lr must be > 0, got 0.0", "train.epochs must be >= 1, got 0"]
    assert str(e.value).startswith("invalid train options:\n  - ")


def test_open_sections_collect_other_keys_and_flat_dict_puts_them_back():
    s = build(Section, {"type": "moelora", "r": 4, "experts": 2})
    assert s.options == {"experts": 2}
    assert flat_dict(s) == {"type": "moelora", "r": 4, "experts": 2}

    @dataclass
    class MoEOptions:
        experts: int = 8

    s.options = build(MoEOptions, s.options, "adapter.")  # what the layer above does with the selected entry
    assert flat_dict(s) == {"type": "moelora", "r": 4, "experts": 2}  # an Options instance flattens alike
    assert option_problems(Section, {"options": {"experts": 2}}, "adapter.")[0].startswith(
        "unknown key 'adapter.options'")  # the field itself is not a key users write


def test_describe_reads_each_fields_type_default_and_comment():
    docs = {d.name: d for d in describe(Train)}
    assert (docs["epochs"].type, docs["epochs"].default, docs["epochs"].doc) == ("int", 1, "passes over the data")
    assert docs["limit"].type == "int or null" and docs["limit"].doc == "None: no limit"
    assert docs["per_task"].doc == "a key documented by the comment block above it, over two lines"
    assert docs["optim"].default == {"lr": 1e-3, "betas": [0.9, 0.999]}  # a factory's value, flat
    assert docs["shuffle"].doc == ""  # no comment, no doc
    assert [d.name for d in describe(Section)] == ["type", "r"]  # an open section's collector is no option
    assert describe(None) == [] and describe(NoOptions) == []


def test_describe_reads_comments_of_a_class_defined_inside_a_function():
    @dataclass
    class Local:
        k: int = 3  # the k

    assert describe(Local)[0].doc == "the k"


def test_a_required_field_is_a_problem_not_a_crash():
    @dataclass
    class Paths:
        path: str
        n: int = 1

    assert option_problems(Paths, {"n": 2}, "model.") == ["model.path is required"]
    assert option_problems(Paths, {"path": 3}, "model.") == ["model.path must be str, got 3"]  # said once
    assert option_problems(Paths, 3, "model.") == ["model must be a mapping, got int"]
    assert parse(Paths, {"path": "x"}).path == "x"


def test_an_optional_nested_section_given_a_mapping_is_built_and_checked():
    @dataclass
    class Outer:
        optim: Optim | None = None

    assert build(Outer, {}).optim is None
    assert build(Outer, {"optim": {"lr": 0.5}}).optim == Optim(lr=0.5)
    assert option_problems(Outer, {"optim": {"lr": 0, "x": 1}}, "o.")[0].startswith("unknown key 'o.optim.x'")
    assert option_problems(Outer, {"optim": {"lr": 0}}, "o.") == ["o.optim.lr must be > 0, got 0.0"]


# --------------------------------------------------------------------------- every method keeps the contract


def _method_names() -> list[str]:
    from coin.methods import METHODS

    return METHODS.names()


@pytest.mark.parametrize("name", _method_names())
def test_every_method_declares_documented_options_with_valid_defaults(name):
    import dataclasses

    from coin.methods import METHODS

    method = METHODS.get(name)
    assert METHODS.doc(name), f"method {name!r} has no docstring"
    options = METHODS.options_of(name)
    assert options is not None and dataclasses.is_dataclass(options), f"method {name!r} has no Options dataclass"
    assert all(d.doc for d in describe(options)), f"every option of {name!r} says what it does"
    assert option_problems(options, {}) == [] and method.validate({}) == [] and method.validate(None) == []
    assert method.validate({"no_such_key": 1})[0].startswith("unknown key 'method_options.no_such_key'")
