"""A run config checked against what is registered: the one place validation meets the registries.

``coin.config`` holds the dataclasses and checks what each section can check alone; this
module imports the plugins a config names, then checks everything that needs a registry:
the method and its ``method_options``, the backbone ``model.name`` and its own keys, the
adapter ``adapter.type`` and its own keys, task names (``train.per_task`` too), orders, the lr
schedule, scoring protocols, trackers and the data layout. Every problem is listed at once, each with its full key.

``upgrade`` makes a stored config (a run folder's ``config.yaml``, written by this or an
older coin) comparable with today's: absent keys take today's defaults, and keys an older
coin wrote for every backbone or adapter (``model.path: null`` for the tiny model,
``adapter.experts: 8`` for LoRA) are dropped where the selected entry does not own them
and they hold that other entry's default.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from coin import shipped
from coin.config import ConfigError, RunConfig, apply_overrides, read_yaml_mapping
from coin.errors import UntrustedPlugins
from coin.options import build, flat_dict, parse_section

__all__ = ["UntrustedPlugins", "from_dict", "import_plugins", "load_config", "section", "section_entries",
           "trusted_plugins", "upgrade", "validate"]


def import_plugins(plugins: list, problems: list[str]) -> None:
    """Import each plugin (a module name or a ``.py`` file) so its registrations take effect."""
    for k, name in enumerate(plugins or []):
        try:
            if str(name).endswith(".py"):
                path = Path(name).resolve()
                mod_name = f"coin_plugin_{path.stem}"
                if mod_name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(mod_name, None)
                    raise
            else:
                importlib.import_module(str(name))
        except Exception as e:  # report, with the key, whatever the plugin raised
            problems.append(f"plugins[{k}] ({name}): cannot import: {e}")


def trusted_plugins(stored: dict, source: str | Path, trust: bool) -> None:
    """Import a stored config's ``plugins`` only when the user asked (``--trust-plugins``).

    A run folder may come from anyone (a shared drive, a download): opening it must not run
    its code. Without ``trust``, a config that names plugins raises ``UntrustedPlugins`` listing
    the files and modules that would run.
    """
    plugins = [str(p) for p in stored.get("plugins") or []]
    if not plugins:
        return
    if not trust:
        raise UntrustedPlugins(f"{source} names plugins that would run as code: {', '.join(plugins)}. Read them, "
                               "then pass --trust-plugins to import them")
    problems: list[str] = []
    import_plugins(plugins, problems)
    if problems:
        raise ConfigError(problems, str(source))


def section_entries() -> dict[str, tuple[Any, str]]:
    """The open sections: section name -> (the registry its selector names, the selector key)."""
    from coin.adapters import ADAPTERS
    from coin.models import BACKBONES

    return {"model": (BACKBONES, "name"), "adapter": (ADAPTERS, "type")}


def validate(cfg: RunConfig, problems: list[str]) -> None:
    """Append every registry-dependent problem of ``cfg``; fills the open sections' parsed Options."""
    import_plugins(cfg.plugins, problems)
    from coin.benchmarks import bind_order
    from coin.benchmarks.coin.benchmark import bind_file_set
    from coin.benchmarks.layout import config_problems
    from coin.schedule import schedule_problems
    from coin.tracking import tracker_problems
    from coin.tasks.protocol_sets import choice_problems
    from coin.methods import METHODS
    from coin.tasks import TASKS
    from coin.tasks.orders import order_problems

    for task in cfg.eval.max_new_tokens or {}:
        if task not in TASKS:
            problems.append(f"eval.max_new_tokens: {TASKS.unknown_message(task)}")
    problems += schedule_problems(cfg.train.schedule, "train.schedule")
    for task in cfg.train.per_task or {}:
        if task not in TASKS:
            problems.append(f"train.per_task.{task}: {TASKS.unknown_message(task)}")
    problems += choice_problems(cfg.eval.protocol, "eval.protocol")
    problems += tracker_problems(cfg.log.trackers)
    problems += bind_order(cfg)  # data.benchmark's own orders and tasks (coin.benchmarks), before the order check
    problems += bind_file_set(cfg)  # data.file_set: auto -> the backbone's file set (Instructions_Qwen for Qwen-VL)
    problems += order_problems(cfg.tasks.order)
    problems += config_problems(cfg.data)
    if cfg.method not in METHODS:
        problems.append(f"method: {METHODS.unknown_message(cfg.method)}")
    else:
        problems += METHODS.get(cfg.method).validate(cfg.method_options)
        problems += METHODS.get(cfg.method).check_run(cfg)  # e.g. an adapter the method cannot work with
    for key, (registry, selector) in section_entries().items():
        parsed, found = parse_section(getattr(cfg, key), key, selector, registry)
        setattr(cfg, key, parsed)
        problems += found
    problems += image_mode_problems(cfg)


def image_mode_problems(cfg: RunConfig) -> list[str]:
    """``eval.image_mode`` other than ``pad`` under a backbone that preprocesses its own way (not LLaVA)."""
    from coin.models import BACKBONES

    name = getattr(cfg.model, "name", None)
    if cfg.eval.image_mode == "pad" or name not in BACKBONES or BACKBONES.get(name).image_modes:
        return []
    return [f"eval.image_mode: {cfg.eval.image_mode!r} applies to the LLaVA backbones (llava, llava-pretrain, tiny); "
            f"model.name {name} preprocesses test images with its own processor: leave eval.image_mode at pad"]


def from_dict(data: dict, source: str | None = None) -> RunConfig:
    """Build and validate a ``RunConfig``; raises ``ConfigError`` listing every problem."""
    problems: list[str] = []
    cfg = build(RunConfig, data, "", problems)
    validate(cfg, problems)  # a key with a bad type kept its default, so the registries' checks still apply
    if problems:  # once each: method_options' NaN is said by the run config and by the method's Options alike
        raise ConfigError(list(dict.fromkeys(problems)), source)
    return cfg


def section(key: str, data: dict | None = None, **keys: Any) -> Any:
    """One validated open section (``"model"`` or ``"adapter"``) from its flat keys, as a run would hold it.

    ``section("model", name="llava", path="llava-hf/llava-1.5-7b-hf")``: for code and tests that
    load a backbone or attach an adapter without a whole run config.
    """
    registry, selector = section_entries()[key]
    problems: list[str] = []
    obj = build(type(getattr(RunConfig(), key)), {**(data or {}), **keys}, f"{key}.", problems)
    if not problems:
        obj, problems = parse_section(obj, key, selector, registry)
    if problems:
        raise ConfigError(problems)
    return obj


MODEL_PATH_SUFFIX = "path"  # a backbone's keys that name local files or folders (path, lm_path, vision_path...)


def relative_to_file(data: dict, folder: Path) -> dict:
    """``data`` with its relative paths read against ``folder`` (the config file's folder).

    ``plugins`` files (``.py``), ``data.root`` and ``data.image_root`` always; a backbone's ``*path``
    keys (``model.path``, ``model.lm_path``...) only where that file or folder exists, since
    ``model.path`` may also be a hub id. ``~`` is expanded; absolute paths stay as they are.
    """

    def under(value: Any, must_exist: bool = False) -> Any:
        if not isinstance(value, str) or not value or "://" in value:
            return value
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        joined = folder / p
        return str(joined) if not must_exist or joined.exists() else value

    out = dict(data)
    if isinstance(out.get("plugins"), list):
        out["plugins"] = [under(x) if isinstance(x, str) and x.endswith(".py") else x for x in out["plugins"]]
    if isinstance(out.get("data"), dict):
        out["data"] = {k: under(v) if k in ("root", "image_root") else v for k, v in out["data"].items()}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: under(v, must_exist=True) if k.endswith(MODEL_PATH_SUFFIX) else v
                        for k, v in out["model"].items()}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (the embedded default when ``path`` is None) and apply the overrides in order
    (``key=value`` or ``~key``; see ``coin.config.apply_overrides``).

    ``path`` is a file or a shipped config's name (``synth/lora``, ``coin/llava-1.5-7b/lora``;
    ``coin.shipped``). Relative paths in a file of yours are read against its folder
    (``relative_to_file``); in a shipped config, whose placeholders point at your data, against the
    working directory, as are paths given in ``overrides``.
    """
    data: dict = {}
    source = None
    if path is not None:
        path = shipped.find(path)
        source = str(path)
        data = read_yaml_mapping(path, "config file")
        if not shipped.is_shipped(path):
            data = relative_to_file(data, Path(path).resolve().parent)
    if overrides:
        data = apply_overrides(data, list(overrides))
    return from_dict(data, source)


def _fields(cls: type | None) -> set[str]:
    return set(getattr(cls, "__dataclass_fields__", {}))


def _defaults(cls: type | None) -> dict:
    return flat_dict(cls()) if cls is not None and dataclasses.is_dataclass(cls) else {}


def upgrade(stored: dict) -> dict:
    """A stored config with keys added since filled in, and other entries' default keys dropped.

    Keys the stored config has keep their values, unknown ones included; only absent keys take
    today's defaults, so an upgrade alone neither splits a comparison nor blocks a resume.
    The stored config's ``plugins`` are not imported: reading a run folder runs no code from it
    (``trusted_plugins``); an entry only a plugin registers is kept as it was written.
    """

    def fill(default: Any, value: Any) -> Any:
        if isinstance(default, dict) and isinstance(value, dict):
            return {**{k: fill(default[k], value[k]) if k in value else default[k] for k in default},
                    **{k: v for k, v in value.items() if k not in default}}
        return value

    out = fill(RunConfig().to_dict(), stored)
    for key, (registry, selector) in section_entries().items():
        section = out.get(key)
        if not isinstance(section, dict) or section.get(selector) not in registry:
            continue
        common = {f.name for f in dataclasses.fields(type(getattr(RunConfig(), key)))} - {"options"}
        own = _defaults(registry.options_of(section[selector]))
        others: dict[str, list] = {}
        for name in registry.names():
            if name != section[selector]:
                for k, v in _defaults(registry.options_of(name)).items():
                    others.setdefault(k, []).append(v)
        kept = {}
        for k, v in section.items():
            if k in common or k in own or not any(v == d for d in others.get(k, [])):
                kept[k] = v
        out[key] = fill({**{k: section[k] for k in section if k in common}, **own}, kept)
    return out
