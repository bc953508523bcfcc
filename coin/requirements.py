"""Whether the installed packages meet coin's own requirements, checked before a run loads anything.

pip enforces ``pyproject.toml``'s ``dependencies`` when it installs coin, but a GPU node often does not
install it that way: a cluster's container image with its own transformers and the checkout on
``PYTHONPATH``, or ``pip install --no-deps``. There an old package fails deep inside a run, with an error
that names neither the package nor the fix (transformers 5.17 under ``train.logits: labelled``:
``IndexError: too many indices for tensor of dimension 3`` in the LM head, after the model loaded).
``unmet()`` compares the installed versions with the requirements once, at the start of a run, of
``coin run --dry-run`` and of ``bench/bench_gpu.py``, and ``check()`` refuses with every unmet one
named and the command that installs it.

The requirements are read from the code that runs: the ``pyproject.toml`` beside the package in a
checkout (an editable install or ``PYTHONPATH``), else the installed distribution's metadata. There is
no second list to keep in step. ``COIN_IGNORE_REQUIREMENTS=1`` runs anyway (a release newer than the
tested range, on purpose).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from coin import DISTRIBUTION
from coin.errors import RequirementsError

IGNORE_VARIABLE = "COIN_IGNORE_REQUIREMENTS"
# why a floor is where it is, for the packages whose floor a GPU image is likely to be below
WHY = {"transformers": "train.logits: labelled passes a boolean logits_to_keep, new in 5.21"}


def _checkout_pyproject() -> Path | None:
    """The ``pyproject.toml`` of the checkout this package was imported from, when it is coin's own."""
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    return path if re.search(rf'^name\s*=\s*"{re.escape(DISTRIBUTION)}"', text, re.M) else None


def pyproject_dependencies(text: str) -> list[str]:
    """The strings of ``[project]``'s ``dependencies = [...]`` (comments skipped; no TOML parser needed on 3.10)."""
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.M | re.S)
    if block is None:
        return []
    lines = (line.split("#", 1)[0] for line in block.group(1).splitlines())
    return [m for line in lines for m in re.findall(r'"([^"]+)"', line)]


@lru_cache(maxsize=1)
def declared() -> tuple[str, ...]:
    """coin's run-time requirements (no extras), as PEP 508 strings."""
    path = _checkout_pyproject()
    if path is not None:
        return tuple(pyproject_dependencies(path.read_text(encoding="utf-8")))
    try:
        reqs = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:  # neither a checkout nor installed: nothing to compare with
        return ()
    return tuple(r for r in reqs if not re.search(r"\bextra\s*==", r))


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def unmet(requirements: tuple[str, ...] | None = None, version_of=None) -> list[str]:
    """One line per requirement the environment does not meet, e.g. ``transformers 5.17.0 is installed;
    coin needs transformers<6,>=5.21 (why)``; empty when every one is met."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    version_of = version_of or installed_version
    problems = []
    for text in declared() if requirements is None else requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = version_of(req.name)
        why = f" ({WHY[req.name]})" if req.name in WHY else ""
        if have is None:
            problems.append(f"{req.name} is not installed; coin needs {req}{why}")
            continue
        try:
            ok = req.specifier.contains(Version(have), prereleases=True)
        except InvalidVersion:
            continue
        if not ok:
            problems.append(f"{req.name} {have} is installed; coin needs {req}{why}")
    return problems


def install_line(requirements: tuple[str, ...] | None = None, version_of=None) -> str:
    """The pip command that installs what ``unmet`` names."""
    from packaging.requirements import Requirement

    names = {line.split(" ", 1)[0] for line in unmet(requirements, version_of)}
    specs = [str(Requirement(t)) for t in (declared() if requirements is None else requirements)
             if Requirement(t).name in names]
    return "pip install " + " ".join(f"'{s}'" for s in specs)


def check(requirements: tuple[str, ...] | None = None, version_of=None, log=None) -> None:
    """Raise ``RequirementsError`` naming every unmet requirement (``COIN_IGNORE_REQUIREMENTS=1``: only ``log`` them)."""
    problems = unmet(requirements, version_of)
    if not problems:
        return
    if os.environ.get(IGNORE_VARIABLE, "") not in ("", "0"):
        if log is not None:
            log(f"{IGNORE_VARIABLE} is set: running with unmet requirements: " + "; ".join(problems))
        return
    raise RequirementsError(
        "this environment does not meet coin's requirements:\n  " + "\n  ".join(problems)
        + f"\ninstall them: {install_line(requirements, version_of)}  (or run anyway: {IGNORE_VARIABLE}=1)")
