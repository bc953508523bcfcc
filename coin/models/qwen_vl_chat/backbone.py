"""Qwen-VL-Chat (the original 2023 model, CoIN's second MLLM) through its own remote code.

The loading, prompts and decoding are ``coin.models.qwen_vl_chat.wrapper``'s; this file holds the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from coin.models.backbone import BACKBONES, Backbone, WeightPath

PROMPT_FORMATS = ("chatml", "coin-eval")  # coin.models.qwen_vl_chat.wrapper.PROMPTS (checked by a test)


@dataclass
class QwenVLChatOptions:
    path: str | None = None  # a local Qwen-VL-Chat folder holding the model's own code (never fetched from a hub)
    prompt: str = "chatml"  # chatml (as CoIN trained it) | coin-eval (CoIN's evaluation string), for train and eval

    def check(self) -> list[str]:
        problems = [] if self.path else ["path is required for model.name 'qwen-vl-chat' (a local Qwen-VL-Chat "
                                         "folder with its own code)"]
        if self.prompt not in PROMPT_FORMATS:
            problems.append(f"prompt must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt!r}")
        return problems


@BACKBONES.register
class QwenVLChat(Backbone):
    """Qwen-VL-Chat from a local folder with its own code (model.path; needs model.trust_remote_code: true)."""

    name = "qwen-vl-chat"

    deviations = (
        "CoIN's evaluation merged the adapters into the non-chat Qwen-VL for every stage after the first; here "
        "each stage is evaluated on the model it trained",
        "CoIN's evaluation dropped the first character of every answer; here answers are kept whole",
        "CoIN trained in ChatML and evaluated with a plain 'System: ... Assistant:' prompt; here one format "
        "serves both (ChatML by default, CoIN's evaluation string as an option)")

    Options = QwenVLChatOptions

    @staticmethod
    def check_section(cfg) -> list[str]:
        if cfg.trust_remote_code:
            return []
        return ["model.trust_remote_code must be true for model.name 'qwen-vl-chat': it runs the model's own code "
                "from model.path (modeling_qwen.py, tokenization_qwen.py); set it only if you trust that folder"]

    @staticmethod
    def load(cfg, log=print, progress=True):
        from coin.models.qwen_vl_chat.wrapper import load_qwen_vl_chat

        return load_qwen_vl_chat(cfg, log)

    @classmethod
    def weights(cls, cfg) -> list[WeightPath]:
        """The folder, always local: remote code is never fetched."""
        return ([WeightPath("model.path", cfg.options.path, "folder",
                            fetch=("huggingface-cli download Qwen/Qwen-VL-Chat --local-dir {path}",))]
                if cfg.options.path else [])

    @classmethod
    def summary(cls, cfg) -> str:
        return f"{cfg.name} ({cfg.options.path}, prompt {cfg.options.prompt})"
