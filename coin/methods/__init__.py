"""Continual-learning methods as plugins: one file each, registered by name."""

from coin.methods.base import Method, StageContext
from coin.methods.ewc import EWC
from coin.methods.lwf import LwF
from coin.methods.multitask import MultiTask
from coin.methods.replay import Replay
from coin.methods.zeroshot import ZeroShot
from coin.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("sequential", Method)
METHODS.register("ewc", EWC)
METHODS.register("lwf", LwF)
METHODS.register("replay", Replay)
METHODS.register("multitask", MultiTask)
METHODS.register("zeroshot", ZeroShot)


def build_method(name: str, options: dict | None = None) -> Method:
    """An instance of the method registered as ``name``."""
    return METHODS.get(name)(options)


__all__ = ["METHODS", "Method", "StageContext", "build_method"]
