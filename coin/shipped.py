"""The configs shipped inside the package, addressable by name from anywhere.

Every YAML under ``coin/configs/`` is installed with the package (``pyproject.toml``'s
package data); in a clone, the repository's ``configs/`` is a link to that folder. A shipped
config's name is its path under that folder without ``.yaml``: ``synth/lora``,
``coin/llava-1.5-7b/lora``, ``ucit/olora``. ``coin run --config NAME`` takes a name wherever it
takes a file (a file that exists wins), ``coin cp NAME [DEST]`` copies one to edit (torchtune's
``tune cp``), and ``coin ls configs`` lists them.

Relative paths in a shipped config (data roots, checkpoints: the values marked PLACEHOLDER)
are read against the working directory, since the package folder holds no data; in a config
of your own they are read against the config file's folder (``coin.config_load``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from coin.errors import ConfigError

ROOT = Path(__file__).resolve().parent / "configs"  # the shipped configs (installed with the package)


def names() -> list[str]:
    """Every shipped config's name (its path under ``coin/configs/`` without ``.yaml``), sorted."""
    if not ROOT.is_dir():
        return []
    return sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.rglob("*.yaml")
                  if "accelerate" not in p.relative_to(ROOT).parts)


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is one of the shipped configs (also when reached through the clone's ``configs`` link)."""
    try:
        Path(path).resolve().relative_to(ROOT)
    except (ValueError, OSError):
        return False
    return True


def find(name: str | Path) -> Path:
    """The file ``name`` means: an existing file as given, else the shipped config of that name.

    ``synth/lora``, ``synth/lora.yaml`` and ``configs/synth/lora.yaml`` (the clone's spelling, from any
    folder) all name ``coin/configs/synth/lora.yaml``. A name that matches neither raises
    ``ConfigError`` with the closest shipped names.
    """
    given = Path(name)
    if given.is_file():
        return given
    text = given.as_posix().removesuffix(".yaml")
    for prefix in ("configs/", "coin/configs/"):
        text = text.removeprefix(prefix)
    candidate = ROOT / f"{text}.yaml"
    if candidate.is_file():
        return candidate
    import difflib

    close = difflib.get_close_matches(text, names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; coin ls configs lists the shipped ones"
    msg = f"config file {name} does not exist, and no shipped config has that name{hint}"
    raise ConfigError([msg], str(name), line=msg)


def copy(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Copy shipped config ``name`` to ``dest`` (a file, or a folder to put ``<last part>.yaml`` in;
    default the working directory) and return the new file. Refuses to overwrite unless ``force``."""
    source = find(name)
    if not is_shipped(source):
        msg = f"config {name!r} is a file of yours, not a shipped config (coin ls configs lists them)"
        raise ConfigError([msg], str(name), line=msg)
    target = Path(dest) if dest is not None else Path.cwd()
    if target.is_dir() or str(dest).endswith(("/", "\\")):
        target = target / source.name
    if target.exists() and not force:
        msg = f"{target} exists; pass --force to overwrite it"
        raise ConfigError([msg], str(target), line=msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
