"""``coin ls [KIND]``: what this install has registered, each entry with its doc and its options."""

from __future__ import annotations

import argparse
import json


def _default(v: object) -> str:
    """A default as a user writes it in YAML (``true``, ``null``, ``0.1``, ``sum``)."""
    if isinstance(v, (dict, list)) or v is None or isinstance(v, bool):
        return json.dumps(v)
    return str(v)


def format_catalog(cat: dict[str, dict]) -> str:
    """The catalog as text: per kind a heading line, per entry its name and doc, then its options and facts."""
    lines: list[str] = []
    for kind, section in cat.items():
        if lines:
            lines.append("")
        lines.append(f"{kind}: {section['what']}")
        if not section["entries"]:
            lines.append("  (none registered)")
        for e in section["entries"]:
            lines.append(f"  {e['name']}" + (f"  {e['doc']}" if e["doc"] else ""))
            for o in e["options"]:
                doc = f"  # {o['doc']}" if o["doc"] else ""
                lines.append(f"      {o['name']}: {o['type']} = {_default(o['default'])}{doc}")
            for key, value in e["facts"].items():
                lines.append(f"      {key}: {value}")
    return "\n".join(lines)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_markdown(cat: dict[str, dict]) -> str:
    """The catalog as the docs site's reference page: per kind a section, per entry its doc, options and facts.

    ``docs/reference.md`` is this output for a clean install (``coin ls --markdown``); a test keeps it current.
    """
    lines = ["# Reference", "",
             "Every registered entry with its options, defaults and doc, generated from the registries by "
             "`coin ls --markdown > docs/reference.md` (a test checks that this page is current). "
             "`coin ls KIND` prints the same in a terminal; a plugin's entries show with `--plugin FILE`.", ""]
    for kind, section in cat.items():
        lines += [f"## {kind}", "", f"{section['what']}", ""]
        for e in section["entries"]:
            lines += [f"### `{e['name']}`", ""]
            if e["doc"]:
                lines += [e["doc"], ""]
            if e["options"]:
                lines += ["| option | type | default | what |", "|---|---|---|---|"]
                lines += [f"| `{o['name']}` | {_cell(o['type'])} | `{_cell(_default(o['default']))}` | {_cell(o['doc'])} |"
                          for o in e["options"]]
                lines.append("")
            if e["facts"]:
                lines += [f"- {key}: {_cell(value)}" for key, value in e["facts"].items()]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cmd_ls(args: argparse.Namespace) -> int:
    from coin.catalog import catalog

    if args.kinds == ["configs"]:  # not a registry: the YAML files shipped in the package (coin.shipped)
        from coin import shipped

        names = shipped.names()
        print(json.dumps(names) if args.json else "configs: shipped in the package (coin cp NAME to copy one; "
              "coin run --config NAME to run it)\n" + "\n".join(f"  {n}" for n in names))
        return 0

    if args.plugin:
        from coin.config import ConfigError
        from coin.config_load import import_plugins

        problems: list[str] = []
        import_plugins(args.plugin, problems)
        if problems:
            raise ConfigError(problems, "--plugin")
    cat = catalog(args.kinds)
    if args.markdown:
        print(format_markdown(cat), end="")
        return 0
    print(json.dumps(cat, indent=1, default=str) if args.json else format_catalog(cat))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``ls``."""
    from coin.catalog import KINDS

    ls = sub.add_parser("ls", help="list what is registered (methods, adapters, backbones, tasks...) with options",
                        description="Kinds: " + ", ".join(KINDS) + ". Without KIND, every kind. "
                                "coin ls configs lists the configs shipped in the package.")
    ls.add_argument("kinds", nargs="*", metavar="KIND", help="kinds to list (default: all)")
    ls.add_argument("-p", "--plugin", action="append", default=[], metavar="FILE",
                    help="import a plugin (a .py file or a module) first, so its entries show")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--markdown", action="store_true", help="the docs site's reference page (docs/reference.md)")
    ls.set_defaults(func=_cmd_ls)
