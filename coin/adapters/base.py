"""The adapter registry and the interface an adapter entry implements.

An adapter is one ``Adapter`` subclass in one file, decorated ``@ADAPTERS.register``, whose ``name`` is the name
``adapter.type`` selects. It declares its own keys as an ``Options`` dataclass (they are
written under ``adapter:`` beside the common r, alpha, dropout and train_projector, and
``coin.config_load`` checks them), builds the PEFT model, and says in one line what it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

from coin.options import NoOptions, parsed
from coin.registry import Registry

if TYPE_CHECKING:
    from coin.config import AdapterConfig
    from coin.models.backbone import VLM


class Adapter:
    """Base of an ``ADAPTERS`` entry: override ``build``; ``Options`` when it takes keys of its own.

    ``cfg`` is the ``adapter`` section (``type``, ``r``, ``alpha``, ``dropout``,
    ``train_projector``) with ``cfg.options`` the entry's parsed ``Options``.
    """

    name: str = ""  # the name it registers under (``@ADAPTERS.register``) and ``adapter.type`` gives
    Options: type = NoOptions

    @staticmethod
    def build(vlm: VLM, cfg: AdapterConfig) -> Any:
        """Wrap ``vlm.model`` and return the PEFT model (trainable parameters: the adapter's).

        Adapt ``vlm.lora_target``; train ``vlm.full_train`` fully when ``cfg.train_projector``.
        """
        raise NotImplementedError

    @staticmethod
    def check_section(cfg: AdapterConfig) -> list[str]:
        """Problems joining this adapter's keys with the common ones, each with its full key."""
        return []

    @classmethod
    def summary(cls, section: Mapping[str, Any]) -> str:
        """One line for plans and reports, from the section as stored (``lora r=32 alpha=64``).

        The adapter's own keys follow, each with its stored value or, when the stored section
        predates the key, its default.
        """
        line = f"{section.get('type')} r={section.get('r')} alpha={float(section.get('alpha') or 0):g}"
        if dataclasses.is_dataclass(cls.Options):
            defaults = cls.Options()
            for f in dataclasses.fields(cls.Options):
                line += f" {f.name}={section[f.name] if f.name in section else getattr(defaults, f.name)}"
        return line


ADAPTERS: Registry[type[Adapter]] = Registry("adapter", builtins=("coin.adapters.lora", "coin.adapters.moelora"))


def describe(section: Mapping[str, Any]) -> str:
    """One line naming a stored ``adapter`` section (type, rank, alpha and the adapter's own keys)."""
    kind = section.get("type")
    if kind in ADAPTERS:
        return ADAPTERS.get(kind).summary(section)
    return f"{kind} r={section.get('r')}"


def parsed_section(cfg: AdapterConfig) -> AdapterConfig:
    """``cfg`` with ``options`` parsed by its adapter's Options and checked with the section.

    A section from ``coin.config_load`` is returned as it is; one built by hand (``options`` still a
    mapping) is parsed here, so a bad key still names itself (``OptionsError``).
    """
    return parsed(cfg, "adapter", "type", ADAPTERS)


# PEFT 0.17-0.21 reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model
# (get_peft_model, PeftModel.from_pretrained: PEFT's call, not coin's); the FutureWarning it raises is
# silenced around those calls only
_PEFT_OWN_DEPRECATION = r"`is_gradient_checkpointing` is deprecated"


@contextlib.contextmanager
def peft_quiet():
    """Around a PEFT call that wraps a model: its own deprecated probe says nothing (other warnings do)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PEFT_OWN_DEPRECATION, category=FutureWarning)
        yield


def peft_model(model: Any, config: Any) -> Any:
    """``peft.get_peft_model(model, config)``, without the deprecation warning PEFT's own probe raises."""
    from peft import get_peft_model

    with peft_quiet():
        return get_peft_model(model, config)
