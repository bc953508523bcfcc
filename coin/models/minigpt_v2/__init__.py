"""MiniGPT-v2: its backbone (``backbone``), its wrapper (``wrapper``) and the model assembled from its
released files (``parts``)."""
