"""UCIT's short-answer rule: exact match after upper-casing (ImageNet-R, ArxivQA, IconQA, CLEVR-Math).

HiDe-LLaVA's evaluation compares ``pred.upper() == answer.upper()``; the ``upper`` normaliser
gives that comparison (surrounding whitespace stripped, as LLaVA's outputs already were).
The caption tasks are scored by ``coin.benchmarks.ucit.captions``.
"""

from __future__ import annotations

from coin.scoring.normalize import NORMALIZERS

__all__ = ["upper"]


@NORMALIZERS.register
def upper(text: str) -> str:
    """Surrounding whitespace removed, upper-cased (UCIT's comparison)."""
    return text.strip().upper()

