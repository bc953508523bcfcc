"""Continual-learning methods as plugins: one file each, registered by name."""

from coin.methods.base import Method, StageContext
from coin.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("sequential", Method)


def build_method(name: str, options: dict | None = None) -> Method:
    """An instance of the method registered as ``name``."""
    return METHODS.get(name)(options)


__all__ = ["METHODS", "Method", "StageContext", "build_method"]
