"""Qwen-VL-Chat (the original, 2023) through its own remote code: loading, prompts, batches, greedy answers.

Qwen-VL-Chat has no processor: its tokenizer writes an image as ``<img>path</img>`` (the path's
bytes as token ids, padded to 256 tokens) and the model opens the file itself on its first
forward. So the path is checked here before it reaches either (``image_tag``): it comes from
``coin.data``, which resolves every record's image inside ``data.image_root`` and refuses one
that escapes it; here it must also be an existing local file (no URL, which the model would
fetch), hold no ``<`` or ``>`` (which would end the tag) and fit the 256-byte span.

Two prompt formats, one for training and evaluation alike (``model.prompt``):

- ``chatml`` (default; how CoIN trained it and how Qwen-VL-Chat was tuned):
  ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nPicture 1:
  <img>{path}</img>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n`` + ``{answer}<|im_end|>``;
- ``coin-eval`` (the string CoIN's evaluation used):
  ``System:You are a helpful assistant.\\n\\n<img>{path}</img>{question} Assistant:`` +
  `` {answer}<|endoftext|>``.

A text-only sample (``image`` None) has no ``Picture 1: <img>...</img>\\n`` (``coin-eval``: no
``<img>...</img>``), as Qwen-VL's own ``from_list_format`` writes a query without an image; a
batch may mix both kinds (the model finds each row's images in its own text).

Labels cover the answer and its end token only (Qwen's own fine-tuning script also labels each
turn's ``<|im_start|>`` and a user turn's ``<|im_end|>``; coin labels answers, as for every
backbone). Decoding is greedy with the model's own tuple KV cache (what the 2023 code returns),
positions from the attention mask, stopping at ``<|im_end|>``, ``<|im_start|>`` or
``<|endoftext|>``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from coin import install_hint
from coin.data.sample import Sample
from coin.models.modes import generating, no_grad_when_frozen
from coin.models.sequences import SequenceBatches, resolve_max_length

SYSTEM = "You are a helpful assistant."
IMG_TOKEN_SPAN = 256  # the tokenizer's fixed span for an image path


@dataclass(frozen=True)
class QwenPrompt:
    """A prompt format: the first prompt, a later turn, and the answer's labelled text and end."""

    name: str
    first: str  # with {image} (the picture, or "" for a text-only sample) and {question}
    picture: str  # how an image is written before the question, with {tag} (the <img> tag)
    turn: str  # a later user turn, with {question}
    answer: str  # with {answer}; its end token follows (labelled)
    end: str  # "im_end" or "eod"
    after: str  # unlabelled text after the end token, before a next turn


PROMPTS = {
    "chatml": QwenPrompt(
        "chatml",
        "<|im_start|>system\n" + SYSTEM + "<|im_end|>\n<|im_start|>user\n{image}{question}<|im_end|>\n"
        "<|im_start|>assistant\n", "Picture 1: {tag}\n",
        "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n", "{answer}", "im_end", "\n"),
    "coin-eval": QwenPrompt("coin-eval", "System:" + SYSTEM + "\n\n{image}{question} Assistant:", "{tag}",
                            "\n\n{question} Assistant:", " {answer}", "eod", ""),  # the later turn is ours
}


def image_tag(s: Sample) -> str:
    """``<img>{path}</img>`` for the sample's image, after the checks the model and tokenizer need."""
    path = s.image
    if path.startswith(("http://", "https://")) or not Path(path).is_file():
        raise ValueError(f"record {s.id}: image {path} is not an existing local file (Qwen-VL-Chat opens the path "
                         "it is given, URLs included, so only local files under data.image_root are passed)")
    if "<" in path or ">" in path:
        raise ValueError(f"record {s.id}: image path {path!r} holds '<' or '>', which would end Qwen-VL's <img> tag")
    size = len(path.encode("utf-8"))
    if size > IMG_TOKEN_SPAN:
        raise ValueError(f"record {s.id}: image path {path!r} is {size} bytes; Qwen-VL's tokenizer holds at most "
                         f"{IMG_TOKEN_SPAN} (use a shorter data.image_root)")
    return f"<img>{path}</img>"


class QwenVLChatVLM(SequenceBatches):
    """``coin.models.backbone.VLM`` over Qwen-VL-Chat's ``QWenLMHeadModel`` and ``QWenTokenizer``."""

    # LoRA on the LM's c_attn, attn.c_proj, w1, w2 (Qwen-VL's fine-tuning script); the ViT and resampler stay frozen
    lora_target = r"transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.w1|mlp\.w2)"
    full_train: list[str] = []

    def __init__(self, model, tokenizer, prompt: str = "chatml", max_length: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.processor = tokenizer  # Qwen-VL's tokenizer is its processor: images travel as paths in the text
        self.format = PROMPTS[prompt]
        self.max_length = max_length
        self.truncated: set[str] = set()
        self.im_start, self.im_end, self.eod = tokenizer.im_start_id, tokenizer.im_end_id, tokenizer.eod_id
        self.pad_id = self.eod  # as Qwen-VL's batch inference and fine-tuning pad
        self.stop_ids = [self.im_end, self.im_start, self.eod]
        visual = getattr(getattr(model, "transformer", None), "visual", None)
        if visual is not None:
            no_grad_when_frozen(visual)

    # ------------------------------------------------------------------ inputs
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def prompt_text(self, s: Sample) -> str:
        """The first prompt: the picture (none for a text-only sample), the question, the generation prompt."""
        picture = "" if s.image is None else self.format.picture.format(tag=image_tag(s))
        return self.format.first.format(image=picture, question=s.prompt)

    def _sequence(self, s: Sample) -> tuple[list[int], list[int], int]:
        """(ids, labels, prompt length) of a training sample, uncut."""
        f = self.format
        end = self.im_end if f.end == "im_end" else self.eod
        ids = self._encode(self.prompt_text(s))
        prompt_len = len(ids)
        labels = [-100] * prompt_len
        for k, (question, answer) in enumerate([(s.prompt, s.answer or "")] + list(s.turns)):
            if k:
                p = self._encode(f.after + f.turn.format(question=question))
                ids, labels = ids + p, labels + [-100] * len(p)
            a = self._encode(f.answer.format(answer=answer)) + [end]
            ids, labels = ids + a, labels + a
        return ids, labels, prompt_len

    def train_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded inputs (the images as paths inside them) with labels on the answers only."""
        return self.padded(self.cut_sequences(samples))

    def generation_batch(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, so every row's next token sits in the last column."""
        from coin.models.decode import left_pad

        input_ids, mask = left_pad([self._encode(self.prompt_text(s)) for s in samples], self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask}

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, samples: list[Sample], max_new_tokens: int) -> list[str]:
        """Greedy answers of at most ``max_new_tokens`` tokens, one per sample, stripped."""
        from coin.models.kv_cache import output_cache  # imports transformers: not at module load

        tokens: list[list[int]] = [[] for _ in samples]
        if max_new_tokens >= 1:
            with generating(self.model, self.generation_batch(samples)) as batch:
                mask = batch["attention_mask"]
                positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
                out = self.model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions,
                                 use_cache=True)
                stop = torch.tensor(self.stop_ids, device=mask.device)
                done = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
                position = positions[:, -1:]
                for step in range(max_new_tokens):
                    nxt = out.logits[:, -1, :].argmax(dim=-1)
                    for k, t in enumerate(nxt.tolist()):
                        if not done[k]:
                            tokens[k].append(t)
                    done |= torch.isin(nxt, stop)
                    if bool(done.all()) or step == max_new_tokens - 1:
                        break
                    mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                    position = position + 1
                    # past_key_values: the keyword of Qwen-VL-Chat's own (remote) forward, not transformers'
                    out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position,
                                     past_key_values=output_cache(out), use_cache=True)
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]

    # ------------------------------------------------------------------ persistence
    def save_base(self, path: str | Path) -> None:
        """Weights (safetensors), tokenizer and the model's own code, reloadable with trust_remote_code."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


def check_folder(path: str) -> Path:
    """The model folder, refused with a message naming what is missing (before any remote code runs)."""
    from coin.errors import MissingPartError, PartsError

    folder = Path(path)
    if not folder.is_dir():
        raise MissingPartError(f"model.path {path}: Qwen-VL-Chat folder does not exist (a local folder holding the "
                               "model's own code is required)")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PartsError(f"model.path {path}: config.json cannot be read ({e})") from None
    code = {v.split(".")[0] + ".py" for k, v in (config.get("auto_map") or {}).items() if isinstance(v, str)}
    if "AutoModelForCausalLM" not in (config.get("auto_map") or {}):
        raise PartsError(f"model.path {path}: config.json has no auto_map for AutoModelForCausalLM; Qwen-VL-Chat's "
                         "folder names its own code there (modeling_qwen.QWenLMHeadModel)")
    missing = sorted(n for n in code | {"tokenizer_config.json"} if not (folder / n).is_file())
    if missing:
        raise MissingPartError(f"model.path {path}: missing {', '.join(missing)} (the model's own code and tokenizer)")
    tokenization = folder / "tokenization_qwen.py"
    if tokenization.is_file() and "import tiktoken" in tokenization.read_text(encoding="utf-8", errors="replace") \
            and importlib.util.find_spec("tiktoken") is None:
        raise ImportError(f"model.path {path}: Qwen-VL-Chat's tokenizer needs the tiktoken package; install it with "
                          + install_hint("qwen-vl"))
    return folder


def load_qwen_vl_chat(cfg, log=print) -> QwenVLChatVLM:
    """Qwen-VL-Chat from ``model.path`` with its own code (``model.trust_remote_code`` must be true)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from coin.models.backbone import torch_dtype
    from coin.models.load_parts import load_part

    if not cfg.trust_remote_code:  # also refused when the config is checked; a hand-built section lands here
        raise ValueError("model.name 'qwen-vl-chat' runs the model's own code: set model.trust_remote_code: true "
                         "if you trust the folder in model.path")
    folder = check_folder(cfg.options.path)
    log(f"loading Qwen-VL-Chat from {folder} with its own code (trust_remote_code), prompt {cfg.options.prompt}")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True)
    extra = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    model = load_part(AutoModelForCausalLM, folder, "Qwen-VL-Chat", dtype=torch_dtype(cfg.dtype),
                       trust_remote_code=True, **extra)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return QwenVLChatVLM(model, tokenizer, cfg.options.prompt, resolve_max_length(cfg.max_length, tokenizer))
