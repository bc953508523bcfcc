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

import contextlib
import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from coin.errors import UnknownNameError
from coin.options import closest

T = TypeVar("T")


def entry_name(entry: Any, kind: str = "entry") -> str:
    """The name an entry registers under: its ``name`` attribute, else a plain function's ``__name__``."""
    name = getattr(entry, "name", None)
    if isinstance(name, str) and name:
        return name
    if callable(entry) and not isinstance(entry, type) and getattr(entry, "__name__", "<lambda>") != "<lambda>":
        return entry.__name__
    raise TypeError(f"{kind} registry: {entry!r} has no name; declare `name = \"...\"` on it")


class Registry(Generic[T]):
    """Maps names to entries; ``register`` takes the entry, which carries its own name (``entry_name``)."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = (),
                 check: Callable[[Any], list[str]] | None = None) -> None:
        self.kind = kind
        self._check = check  # an entry's problems (empty: fine), checked before it is registered
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

    def register(self, entry: Any = None, obj: Any = None, *, options: type | None = None) -> Any:
        """Register ``entry`` under its own name and return it: ``@REGISTRY.register`` on a class or a
        function, ``REGISTRY.register(record)`` on a declared record (a ``TaskSpec``, a ``BenchmarkSpec``).

        The name is the entry's ``name`` attribute (a class attribute, a record's field), or a plain
        function's ``__name__``; it is written once, in the entry's own file. The registry's ``check``
        (e.g. ``TaskSpec.check``) runs first: a declaration with problems raises ``ValueError`` listing
        every one, so a plugin's typo stops at import.

        The 0.x form ``register("name", obj)`` (or ``@register("name")``) still works, with a
        ``DeprecationWarning``.
        """
        if isinstance(entry, str):  # the 0.x form: the name given beside the entry
            import warnings

            warnings.warn(f"{self.kind} registry: register({entry!r}, obj) is deprecated; give the entry a `name` "
                          "and use @REGISTRY.register (a class or function) or REGISTRY.register(record)",
                          DeprecationWarning, stacklevel=2)
            name = entry
            return (lambda o: self._add(name, o, options)) if obj is None else self._add(name, obj, options)
        if entry is None:
            raise TypeError(f"{self.kind} registry: register takes the entry (a class, function or record)")
        return self._add(entry_name(entry, self.kind), entry, options)

    def _add(self, name: str, entry: T, options: type | None = None) -> T:
        if self._check is not None:
            problems = self._check(entry)
            if problems:
                raise ValueError(f"{self.kind} {name!r}:\n  - " + "\n  - ".join(problems))
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = entry
        self._options[name] = options
        return entry

    @contextlib.contextmanager
    def scratch(self) -> Iterator["Registry[T]"]:
        """Entries registered inside the block are gone after it (a plugin's tests register freely).

        The built-ins are loaded first, so the restored registry is the full one, not a snapshot
        taken before the first lookup.
        """
        self._load()
        items, options = dict(self._items), dict(self._options)
        try:
            yield self
        finally:
            self._items, self._options = items, options

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
