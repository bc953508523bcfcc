"""Continual-learning methods as plugins: one file each, registering itself (``@METHODS.register``).

Importing this package imports every built-in method's file, so ``METHODS`` (declared in
``coin.methods.base``) holds them all.
"""

from coin.methods.asd import ASD, SEFE
from coin.methods.base import METHODS, Method, StageContext
from coin.methods.disco import Disco
from coin.methods.ewc import EWC
from coin.methods.hide import HiDe
from coin.methods.keeplora import KeepLoRA
from coin.methods.lwf import LwF
from coin.methods.mrlora import MRLoRA
from coin.methods.multitask import MultiTask
from coin.methods.olora import OLoRA
from coin.methods.proglora import ProgLoRA
from coin.methods.reglora import RegLoRA
from coin.methods.replay import Replay
from coin.methods.zeroshot import ZeroShot


def build_method(name: str, options: dict | None = None) -> Method:
    """An instance of the method registered as ``name``."""
    return METHODS.get(name)(options)


# the summary metrics that compare rows of an accuracy matrix (``coin.metrics.summarize``'s keys)
ROW_METRICS = ("maa", "bwt", "plasticity", "fwt", "mean_forgetting")


def final_row_only(name: str | None) -> bool:
    """Whether only the last row of a run of method ``name`` is that method's model (e.g. multi-task).

    Earlier rows of such a run are some other model (for multi-task, the untrained one), so the
    metrics that compare rows (MAA, BWT, forgetting...) say nothing about the method; a name
    this install does not know counts as an ordinary method.
    """
    return name in METHODS.names() and bool(METHODS.get(name).final_row_only)


def hide_row_metrics(summary: dict) -> dict:
    """``summary`` with the row-comparing metrics set to None (per-task forgetting included)."""
    out = dict(summary)
    for key in ROW_METRICS:
        out[key] = None
    if isinstance(out.get("forgetting"), list):
        out["forgetting"] = [None] * len(out["forgetting"])
    return out


__all__ = ["METHODS", "Method", "ROW_METRICS", "StageContext", "build_method", "final_row_only",
           "hide_row_metrics"]
