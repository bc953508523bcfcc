"""The model protocol over any image-text-to-text model whose processor has a chat template.

``ChatVLM`` is ``LlavaVLM``'s protocol (``train_batch``, ``generate``, ``save_base``,
``lora_target``, ``full_train``) written against the chat template instead of a hand-coded
prompt format, so Qwen2-VL, Qwen2.5-VL and other ``AutoModelForImageTextToText`` models work
without a per-model class. Every piece of text comes from rendering the template:

- the prompt is the conversation up to the generation prompt; the processor tokenises it
  with the image, so the image placeholder is expanded exactly as at inference;
- an answer is what the template adds for the assistant turn: the answer text and the
  end-of-turn marker (labelled), then any whitespace before the next turn (not labelled);
- a further turn is what the template adds for the next user message.

Prompt and answers are tokenised separately and joined, so the labels cover exactly the
answer tokens and each end of turn, and generation sees exactly the training prompt. A
training sequence longer than ``max_length`` is cut at the end and counted in ``truncated``.
Images of box-answer tasks (Grounding) are padded to a square first, because CoIN's boxes are
normalised to the padded square; other images keep their shape (Qwen2-VL reads any aspect ratio).
A text-only sample (``image`` None) is rendered without the image part of its user turn and
tokenised without images; a batch may mix both kinds, its vision tensors those of the samples
that have an image, in order.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from coin.data.sample import Sample
from coin.models.images import expand_to_square, load_image
from coin.models.modes import generating, no_grad_when_frozen
from coin.models.sequences import resolve_max_length, truncate

_SENTINEL = "COINANSWERSENTINEL"
_LM_PROJ = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
_QWEN_LM = (r".*language_model\.layers\.\d+\."
            r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))")
# per-token inputs besides input_ids that a processor may return; 0 marks a text token in each
_TEXT_KEYS = ("attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass(frozen=True)
class Targets:
    """What an adapter trains: a PEFT ``target_modules`` regex and modules trained fully."""

    lora: str  # every linear layer of the LM's decoder blocks; not lm_head, not the vision tower
    full_train: tuple[str, ...]  # the projector (PEFT modules_to_save, matched as a name suffix)


# keyed by ``model.config.model_type``; the vision towers of Qwen2.5-VL also have gate/up/down_proj,
# so the LM's regexes are anchored on ``language_model``
TARGETS: dict[str, Targets] = {
    "qwen2_vl": Targets(_QWEN_LM, ("visual.merger",)),
    "qwen2_5_vl": Targets(_QWEN_LM, ("visual.merger",)),
    "llava": Targets(rf".*language_model.*\.{_LM_PROJ}", ("multi_modal_projector",)),
}


def targets_for(model) -> Targets:
    """The table's entry for the model's type, else LoRA on the LM's projections found by name."""
    t = TARGETS.get(model.config.model_type) or fallback_targets(model)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not any(re.fullmatch(t.lora, n) for n in names):
        raise ValueError(f"LoRA target {t.lora!r} matches no linear layer of {type(model).__name__}")
    return t


def fallback_targets(model) -> Targets:
    """q/k/v/o/gate/up/down projections under the language model; the projector or merger if any."""
    modules = dict(model.named_modules())
    lm = None
    if hasattr(model, "get_decoder"):
        decoder = model.get_decoder()
        lm = next((n for n, m in modules.items() if m is decoder and n), None)
    if lm is None:  # no decoder accessor: the shallowest module called language_model / text_model
        found = [n for n in modules if n.rsplit(".", 1)[-1] in ("language_model", "text_model")]
        if not found:
            raise ValueError(f"cannot find the language model inside {type(model).__name__} to place LoRA on")
        lm = min(found, key=lambda n: n.count("."))
    inside = lm + "."
    projector = [n for n in modules if re.search(r"projector|merger", n.rsplit(".", 1)[-1])
                 and not n.startswith(inside)]
    full = (min(projector, key=lambda n: n.count(".")),) if projector else ()
    return Targets(rf"{re.escape(lm)}\..*\.{_LM_PROJ}", full)


def chat_template(processor) -> str | None:
    """The processor's chat template (its default when it has several), else the tokenizer's."""
    t = getattr(processor, "chat_template", None)
    if isinstance(t, dict):
        t = t.get("default")
    return t or getattr(getattr(processor, "tokenizer", None), "chat_template", None)


def _user(text: str, image: bool = False) -> dict:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    return {"role": "user", "content": content}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


class ChatVLM:
    """Batches, forward inputs and greedy generation from a processor's chat template."""

    kv_cache = "preallocated"  # or "dynamic" (Hugging Face's); see coin/models/kv_cache.py

    def __init__(self, model, processor, targets: Targets | None = None, max_length: int | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_length = max_length  # None: no limit
        self.truncated: set[str] = set()  # ids of the training samples cut to max_length
        tower = vision_tower(model)
        if tower is not None:
            no_grad_when_frozen(tower)
        self.chat_template = chat_template(processor)
        if not self.chat_template:
            raise ValueError(f"{type(processor).__name__} has no chat template")
        t = targets or targets_for(model)
        self.lora_target, self.full_train = t.lora, list(t.full_train)
        self.end_of_turn = self._probe_end_of_turn()
        eot = self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
        self.eos_ids = [eot]  # generation stops at the end of turn, or at the tokenizer's own EOS
        if self.tokenizer.eos_token_id not in (None, eot):
            self.eos_ids.append(self.tokenizer.eos_token_id)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eot
        # generation batches built ahead (prefetch), by their samples' ids; the two newest at most
        self._prefetched: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}
        self._prefetch_lock = threading.Lock()
        # the tokenizer is shared with the prefetch thread: one of them uses it at a time (a fast
        # tokenizer borrowed mutably while another thread decodes fails with "Already borrowed")
        self._text_lock = threading.RLock()

    # ------------------------------------------------------------------ text from the template
    def render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        """The conversation as the template writes it (untokenised; the image as its placeholder)."""
        return self.processor.apply_chat_template(messages, chat_template=self.chat_template, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _probe_end_of_turn(self) -> str:
        """The marker the template puts after an answer; it must be one token, to stop generation on."""
        messages = [_user("q", image=True)]
        prompt = self.render(messages, generation_prompt=True)
        full = self.render(messages + [_assistant(_SENTINEL)])
        if not full.startswith(prompt) or _SENTINEL not in full[len(prompt):]:
            raise ValueError("the chat template's prompt with the generation prompt is not a prefix of the "
                             "conversation with the answer; cannot separate prompt and answer")
        marker = full.split(_SENTINEL, 1)[1].strip()
        if not marker:
            raise ValueError("the chat template ends an assistant turn with nothing; cannot tell where answers end")
        ids = self.tokenizer(marker, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"the chat template ends an assistant turn with {marker!r}, which is {len(ids)} tokens; "
                             "generation can only stop on a single token")
        return marker

    def _split_answer(self, suffix: str) -> tuple[str, str]:
        """An answer's text as (labelled: answer and end of turn, unlabelled: what follows)."""
        k = suffix.rfind(self.end_of_turn)
        assert k >= 0, f"the template's end of turn {self.end_of_turn!r} is missing from {suffix!r}"
        k += len(self.end_of_turn)
        return suffix[:k], suffix[k:]

    def conversation(self, s: Sample) -> tuple[str, list[tuple[str, bool]]]:
        """The sample's prompt (with the image) and the text pieces after it, each with "is labelled"."""
        messages = [_user(s.prompt, image=s.image is not None)]
        prompt = self.render(messages, generation_prompt=True)
        pieces: list[tuple[str, bool]] = []
        prev = prompt
        for k, (question, answer) in enumerate([(s.prompt, s.answer or "")] + list(s.turns)):
            if k:
                messages.append(_user(question))
                p = self.render(messages, generation_prompt=True)
                pieces.append((self._after(prev, p, s), False))
                prev = p
            messages.append(_assistant(answer))
            full = self.render(messages)
            labelled, rest = self._split_answer(self._after(prev, full, s))
            pieces += [(labelled, True), (rest, False)]
            prev = full
        return prompt, pieces[:-1]  # the whitespace after the last end of turn predicts nothing

    @staticmethod
    def _after(prefix: str, text: str, s: Sample) -> str:
        if not text.startswith(prefix):
            raise ValueError(f"sample {s.id}: the chat template renders a conversation's start differently once "
                             "it continues; cannot split it into turns")
        return text[len(prefix):]

    # ------------------------------------------------------------------ inputs
    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        with self._text_lock:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, s: Sample, prompt: str) -> tuple[dict[str, list[int]], dict[str, torch.Tensor]]:
        """Per-token inputs (input_ids, attention_mask, ...) and vision tensors of the prompt with its image
        (a text-only sample: none)."""
        kwargs = {}
        bos = self.tokenizer.bos_token
        if bos is not None and prompt.startswith(bos):  # as transformers' apply_chat_template: no second BOS
            kwargs["add_special_tokens"] = False
        if s.image is not None:
            image = load_image(s.image, s.id)
            if pads_to_square(s.task):
                image = expand_to_square(image, getattr(self.processor, "image_processor", None))
            kwargs["images"] = [image]
        with self._text_lock:
            enc = self.processor(text=[prompt], return_tensors="pt", **kwargs)
        width = enc["input_ids"].shape[-1]
        text, vision = {}, {}
        for key, value in enc.items():
            if not isinstance(value, torch.Tensor):
                continue
            if key == "input_ids" or key in _TEXT_KEYS or (value.dim() == 2 and value.shape == (1, width)
                                                           and not key.startswith(("pixel", "image"))):
                text[key] = value[0].tolist()
            else:
                vision[key] = value
        return text, vision

    @staticmethod
    def _extend(text: dict[str, list[int]], ids: list[int]) -> None:
        text["input_ids"] = text["input_ids"] + ids
        for key in text:
            if key != "input_ids":  # attention 1, every other per-token key 0 (a text token)
                text[key] = text[key] + [int(key == "attention_mask")] * len(ids)

    def _pad(self, rows: list[dict[str, list[int]]], left: bool) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        out = {}
        for key in dict.fromkeys(k for r in rows for k in r):  # a row without a per-token key: all text (0)
            fill = self.pad_id if key == "input_ids" else (-100 if key == "labels" else 0)
            t = torch.full((len(rows), width), fill, dtype=torch.long)
            for k, r in enumerate(rows):
                v = torch.tensor(r.get(key, [0] * len(r["input_ids"])), dtype=torch.long)
                if left:
                    t[k, width - len(v):] = v
                else:
                    t[k, : len(v)] = v
            out[key] = t
        return out

    @staticmethod
    def _stack_vision(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        # (1, 3, H, W) pixels and Qwen's flattened (patches, dim) pixels alike concatenate along dim 0;
        # a text-only sample has no part (its row has no image tokens to fill)
        parts = [p for p in parts if p]
        return {key: torch.cat([p[key] for p in parts], dim=0) for key in parts[0]} if parts else {}

    def train_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded inputs with labels only on the answer tokens (and each end of turn)."""
        rows, vision = [], []
        for s in samples:
            prompt, pieces = self.conversation(s)
            text, v = self.encode_prompt(s, prompt)
            prompt_len = len(text["input_ids"])
            labels = [-100] * prompt_len
            for piece, labelled in pieces:
                ids = self._encode(piece)
                self._extend(text, ids)
                labels += ids if labelled else [-100] * len(ids)
            text["input_ids"], labels = truncate(s, text["input_ids"], labels, prompt_len, self.max_length,
                                                 self.truncated)
            text = {key: value[: len(labels)] for key, value in text.items()}
            text["labels"] = labels
            rows.append(text)
            vision.append(v)
        return {**self._pad(rows, left=False), **self._stack_vision(vision)}

    def generation_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, so every row's next token sits in the last column."""
        rows, vision = [], []
        for s in samples:
            text, v = self.encode_prompt(s, self.render([_user(s.prompt, image=s.image is not None)],
                                                        generation_prompt=True))
            rows.append(text)
            vision.append(v)
        return {**self._pad(rows, left=True), **self._stack_vision(vision)}

    def prefetch(self, samples: list[Sample]) -> None:
        """Build the generation batch of ``samples`` ahead of its turn (images decoded, resized and cut into
        patches, prompts tokenised): the evaluation runs this in a thread while the model answers the batch
        before, and ``generate`` takes it. The inputs are ``generation_batch``'s own, so the answers are the
        same; the two newest batches are kept at most."""
        batch = self.generation_batch(samples)
        with self._prefetch_lock:
            self._prefetched[tuple(s.id for s in samples)] = batch
            while len(self._prefetched) > 2:
                self._prefetched.pop(next(iter(self._prefetched)))

    def _inputs(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        with self._prefetch_lock:
            batch = self._prefetched.pop(tuple(s.id for s in samples), None)
        return batch if batch is not None else self.generation_batch(samples)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers with the KV cache, stopping at the end of turn.

        The model's own generation config (e.g. a hub ``repetition_penalty``) is overridden:
        decoding is plain greedy, as the benchmark's protocol asks.
        """
        from coin.models.kv_cache import cache_for  # imports transformers: not at module load

        with generating(self.model, self._inputs(samples)) as batch:
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                repetition_penalty=1.0,
                temperature=None,
                top_p=None,
                top_k=None,
                use_cache=True,
                # coin pairs the processes' forwards itself (coin.engine.fsdp.lockstep); transformers' own per-step
                # sync, on by default for a sharded model, would issue collectives that do not match
                synced_gpus=False,
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                **cache_for(self.model, self.kv_cache, batch["input_ids"].shape[1], max_new_tokens),
            )
        new = out[:, batch["input_ids"].shape[1]:]
        with self._text_lock:
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip() for t in texts]

    # ------------------------------------------------------------------ persistence
    def save_base(self, path: str | Path) -> None:
        """Save weights (safetensors), tokenizer and processor so ``from_pretrained`` reloads them."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.processor.save_pretrained(path)
        if getattr(self.processor, "video_processor", None) is None and hasattr(self.processor, "image_processor"):
            # an image-only processor (see ``image_only``): a video processor, where torchvision lets one
            # load, falls back to preprocessor_config.json
            self.processor.image_processor.save_pretrained(path)


# ---------------------------------------------------------------------- loading


def pads_to_square(task: str) -> bool:
    """Whether a task's images are padded to a square: those whose answers are boxes normalised
    to the padded square (CoIN's Grounding)."""
    from coin.tasks import TASKS

    return task in TASKS and TASKS.get(task).answer_form == "box"


def vision_tower(model) -> torch.nn.Module | None:
    """The model's vision encoder (``visual`` in Qwen2-VL, ``vision_tower`` in LLaVA), if it has one."""
    found = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in ("visual", "vision_tower",
                                                                                  "vision_model")]
    return min(found, key=lambda nm: nm[0].count("."))[1] if found else None


def cap_pixels(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set a Qwen2-VL-style image processor's pixel range (its ``size`` is in pixels, not edges).

    The hub's Qwen2-VL allows 12,845,056 pixels (~16k visual tokens) per image, so a batch of
    large VizWiz or TextVQA photos runs out of memory; other processors are left alone.
    """
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    if ip is None or not hasattr(ip, "merge_size") or size is None:
        return
    for edge, key, value in (("shortest_edge", "min_pixels", min_pixels), ("longest_edge", "max_pixels", max_pixels)):
        if value is None:
            continue
        if isinstance(size, dict):
            size[edge] = value
        else:  # transformers' SizeDict
            setattr(size, edge, value)
        if isinstance(getattr(ip, key, None), int):  # older processors keep both spellings
            setattr(ip, key, value)


def image_only(processor_class):
    """``processor_class`` without its video processor (which needs torchvision; images do not).

    transformers 5 loads e.g. Qwen2-VL's processor with a video processor that imports
    torchvision; CoIN has no videos, so on a machine without torchvision the processor is
    built from its tokenizer and (PIL) image processor alone. Saved, it is the same class.
    """
    attributes = [a for a in processor_class.get_attributes() if "video" not in a]
    return type(processor_class.__name__, (processor_class,), {
        "__module__": processor_class.__module__,
        "get_attributes": classmethod(lambda cls: list(attributes)),
    })


def load_processor(path: str, trust_remote_code: bool = False):
    """``AutoProcessor`` for ``path``, image-only where its video processor cannot load (a local
    folder's tokenizer files checked first, ``coin.models.tokenizer_check``)."""
    from transformers import AutoConfig, AutoProcessor

    if path and Path(path).is_dir():  # a hub id: fetched and checked by transformers
        from coin.models.tokenizer_check import check_tokenizer_files

        check_tokenizer_files(path)
    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ImportError as e:
        if "torchvision" not in str(e).lower():
            raise
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        if type(config) not in PROCESSOR_MAPPING:
            raise
        return image_only(PROCESSOR_MAPPING[type(config)]).from_pretrained(path)


def load_chat_vlm(cfg, model_types: tuple[str, ...] | None = None) -> ChatVLM:
    """A ``ChatVLM`` over ``AutoModelForImageTextToText`` from ``cfg.path`` (checked before weights load)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from coin.models.backbone import hf_load_kwargs
    from coin.models.empty import from_pretrained

    path = cfg.options.path
    if model_types is not None:
        kind = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code).model_type
        if kind not in model_types:
            raise ValueError(f"model.name {cfg.name!r} expects a model of type {' or '.join(model_types)}; "
                             f"model.path {path!r} holds {kind!r} (model.name 'hf' takes any chat model)")
    processor = load_processor(path, cfg.trust_remote_code)
    if not chat_template(processor):
        raise ValueError(f"model.path {path!r}: the processor has no chat template, which model.name "
                         f"{cfg.name!r} needs to format prompts and answers; add a chat_template.jinja to the "
                         "folder, or use a backbone with its own format (e.g. model.name 'llava')")
    cap_pixels(processor, cfg.options.min_pixels, cfg.options.max_pixels)
    model = from_pretrained(AutoModelForImageTextToText, path, **hf_load_kwargs(cfg))
    return ChatVLM(model, processor, max_length=resolve_max_length(cfg.max_length, processor.tokenizer))
