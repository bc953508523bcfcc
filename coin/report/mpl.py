"""matplotlib as coin uses it: the Agg canvas, and its font cache inside coin's cache.

matplotlib writes a font list to ``~/.cache/matplotlib`` the first time it draws text. A
coin run writes only to its run folder, the cache and the paths the user named, so unless
the user set ``MPLCONFIGDIR`` this module points it at ``<COIN_CACHE>/matplotlib`` before
matplotlib is imported. Import matplotlib through here (``from coin.report.mpl import
matplotlib``) so the order holds wherever the first import happens.
"""

from __future__ import annotations

import os

from coin.io import cache_dir

os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

__all__ = ["matplotlib"]
