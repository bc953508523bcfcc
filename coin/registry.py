"""A tiny name -> object registry shared by tasks, scorers, adapters, methods and models.

An unknown name raises a ``KeyError`` that lists the choices and the nearest match,
so a typo in a config says what was meant instead of failing deep inside a run.

A registry is declared in the lowest layer that needs to look names up, and its built-in
entries may live higher up (a benchmark's tasks and scorers in ``coin/benchmarks/<name>/``):
``builtins`` names the modules whose import registers them, imported on the first lookup,
together with installed plugins (the ``coin.plugins`` entry-point group). Registering never
triggers that import, so a module that registers an entry can itself be a built-in module.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from coin.options import closest

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message names the choices."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects; ``register`` works as a decorator or a plain call."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._options: dict[str, type | None] = {}
        self._builtins = tuple(builtins)
        self._loaded = False

    def _load(self) -> None:
        """Import the modules that register the built-in entries, and installed plugins, once."""
        if self._loaded:
            return
        self._loaded = True  # first: a built-in module's own lookups must not import it again
        try:
            for module in self._builtins:
                importlib.import_module(module)
            load_installed_plugins()
        except BaseException:
            self._loaded = False
            raise

    def register(self, name: str, obj: T | None = None, *, options: type | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name`` (decorator when ``obj`` is omitted).

        ``options`` is the entry's options dataclass when the entry itself does not carry
        one as ``Options`` (``coin.options`` builds and checks it; ``coin ls`` lists it).
        """

        def add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            self._options[name] = options
            return o

        return add if obj is None else add(obj)

    def options_of(self, name: str) -> type | None:
        """The options dataclass of entry ``name``: the one registered with it, else its ``Options``."""
        obj = self.get(name)
        return self._options.get(name) or getattr(obj, "Options", None)

    def doc(self, name: str) -> str:
        """The first line of entry ``name``'s docstring (empty when it has none)."""
        obj: Any = self.get(name)
        own = getattr(obj, "doc", None)  # an entry that is a plain record (a task, a family) may carry one
        text = own if isinstance(own, str) and own else (getattr(obj, "__doc__", None) or "")
        return text.strip().split("\n")[0].strip()

    def get(self, name: str) -> T:
        """Return the object for ``name`` or raise ``UnknownNameError`` with a hint."""
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown ``name``: the choices and the nearest one."""
        self._load()
        choices = sorted(self._items)
        close = closest(name, choices)
        hint = f" Did you mean {close!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Choices: {', '.join(choices)}"

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)


PLUGIN_GROUP = "coin.plugins"
_plugins_loaded = False


def load_installed_plugins() -> None:
    """Import every installed plugin (entry points of the ``coin.plugins`` group), once per process.

    A package declares ``[project.entry-points."coin.plugins"] mine = "my_package.coin_plugin"``;
    importing that module registers its entries, as a config's ``plugins:`` list does for a file.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as e:
            raise ImportError(f"installed coin plugin {ep.name!r} ({ep.value}) failed to import: {e}") from e
