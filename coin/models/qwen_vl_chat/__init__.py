"""Qwen-VL-Chat (2023) through its own remote code: its backbone (``backbone``) and wrapper (``wrapper``)."""
