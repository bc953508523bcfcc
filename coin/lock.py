"""The lock of the README's figures: ``constraints.txt``, and whether an environment matches it.

A CPU run is bit-for-bit repeatable on the same CPU kind, thread count and library versions; the
README's figures moved once when transformers went from 5.24 to 5.25 unannounced. The repository
ships the exact versions its figures were measured with as a pip constraints file::

    pip install -c constraints.txt torch==2.13.0 -e ".[test]"     # the README's versions

(a constraints file pins only what gets installed, so the extras pull nothing more). Every run
records in ``env.json`` (``lock``) whether its packages match the lock and which differ, so a
figure from another environment says so. ``python -m coin.lock --write`` rewrites the file from
the environment it runs in (after re-measuring the figures in it).
"""

from __future__ import annotations

import argparse
import hashlib
import re
from importlib import metadata
from pathlib import Path

from coin import DISTRIBUTION

LOCK_NAME = "constraints.txt"
HEADER = ("# The exact package versions the README's figures were measured with (coin.lock).\n"
          "# pip install -c constraints.txt torch==2.13.0 -e \".[test]\"   reproduces that environment;\n"
          "# python -m coin.lock --write   rewrites this file from the current one.\n")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _public(version: str) -> str:
    """A version without its local label (torch's ``2.13.0+cpu`` is ``2.13.0``: a CUDA build matches too)."""
    return version.split("+", 1)[0]


def lock_path() -> Path | None:
    """The repository's ``constraints.txt`` beside the package (an editable install), or None."""
    path = Path(__file__).resolve().parents[1] / LOCK_NAME
    return path if path.is_file() else None


def read_lock(path: Path) -> dict[str, str]:
    """``{package: version}`` from the ``name==version`` lines of a constraints file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    """Every installed distribution's public version, by normalised name (coin itself left out).

    Where one name is installed twice (a virtual environment over the system's site-packages), the
    first on ``sys.path`` is the one Python imports, so that is the one recorded."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and _norm(name) not in ("coin", DISTRIBUTION):
            out.setdefault(_norm(name), _public(dist.version))
    return out


def lock_status(path: Path | None = None) -> dict | None:
    """``{"file", "sha256", "pinned", "matches", "differs": {name: [locked, installed or None]}}`` for the
    lock at ``path`` (default the repository's); None when there is none (a wheel install)."""
    path = path or lock_path()
    if path is None:
        return None
    pins, have = read_lock(path), installed()
    differs = {name: [version, have.get(name)] for name, version in sorted(pins.items())
               if have.get(name) is not None and have[name] != _public(version)}
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16], "pinned": len(pins),
            "matches": not differs, "differs": differs}


def freeze_text() -> str:
    """The constraints file for the current environment."""
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(installed().items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coin.lock", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite the repository's {LOCK_NAME}")
    args = ap.parse_args(argv)
    if args.write:
        target = Path(__file__).resolve().parents[1] / LOCK_NAME
        target.write_text(freeze_text(), encoding="utf-8")
        print(f"wrote {target}")
        return 0
    status = lock_status()
    print("no constraints.txt beside the package" if status is None else
          f"{status['file']}: {status['pinned']} pins; " + ("the environment matches" if status["matches"] else
                                                           f"differs: {status['differs']}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
