"""A missing or unreadable tokenizer file is named at first contact (issue #30, point 9).

On transformers 5 a Vicuna-style folder (``tokenizer_config.json`` naming ``LlamaTokenizer``)
without its ``tokenizer.model`` loads as a tokenizer of three tokens, and a corrupt one fails
with "tiktoken is required". The folders here are written offline: a tiny sentencepiece model
trained in the test, with Vicuna's tokenizer_config.json and a config.json giving its vocab size.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from coin.cli import exit_code, main
from coin.models.tokenizer_check import TokenizerError, check_tokenizer_files, load_tokenizer

VOCAB = 320  # 256 byte-fallback pieces, <unk> <s> </s>, and merges


def _write_vicuna_tokenizer(path) -> None:
    """tokenizer.model (sentencepiece BPE, byte fallback), tokenizer_config.json as lmsys/vicuna's, config.json."""
    import sentencepiece as spm

    path.mkdir()
    corpus = path.parent / "corpus.txt"
    corpus.write_text("\n".join(["A chat between a curious user and an artificial intelligence assistant.",
                                 "USER: What colour is it? ASSISTANT: red green blue",
                                 "Answer the question using a single word or phrase."] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(path / "tokenizer"), vocab_size=VOCAB,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, minloglevel=2)
    (path / "tokenizer.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": None, "add_bos_token": True, "add_eos_token": False, "legacy": False}))
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": VOCAB}))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "vicuna"
    _write_vicuna_tokenizer(path)
    return path


def _copy(good, dst, drop: str | None = None):
    shutil.copytree(good, dst)
    if drop:
        (dst / drop).unlink()
    return dst


def test_a_good_sentencepiece_folder_loads(good):
    check_tokenizer_files(good)
    tok = load_tokenizer(good)
    assert type(tok).__name__ == "LlamaTokenizer" and len(tok) == VOCAB
    ids = tok("USER: What colour is it?")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == "USER: What colour is it?"


def test_a_missing_tokenizer_model_is_named(good, tmp_path):
    from transformers import AutoTokenizer

    broken = _copy(good, tmp_path / "vicuna", drop="tokenizer.model")
    assert len(AutoTokenizer.from_pretrained(str(broken))) < 10  # transformers alone: silently 3 tokens
    for call in (check_tokenizer_files, load_tokenizer):
        with pytest.raises(TokenizerError, match=r"tokenizer\.model is missing") as e:
            call(broken)
        assert str(broken) in str(e.value) and "\n" not in str(e.value)
    (broken / "tokenizer.model").write_bytes(b"")  # an empty file is no better
    with pytest.raises(TokenizerError, match=r"tokenizer\.model is empty or unreadable"):
        check_tokenizer_files(broken)


def test_a_corrupt_tokenizer_model_is_named_not_tiktoken(good, tmp_path):
    from transformers import AutoTokenizer

    broken = _copy(good, tmp_path / "vicuna")
    (broken / "tokenizer.model").write_bytes(bytes(torch.randint(0, 256, (3000,), generator=torch.Generator()
                                                                 .manual_seed(0), dtype=torch.uint8).tolist()))
    with pytest.raises(Exception, match="tiktoken"):  # transformers alone: a misleading package name
        AutoTokenizer.from_pretrained(str(broken))
    with pytest.raises(TokenizerError, match=r"tokenizer\.model is not a readable sentencepiece model") as e:
        load_tokenizer(broken)
    assert str(broken) in str(e.value) and "tiktoken" not in str(e.value)


@pytest.mark.parametrize("package, module", [("sentencepiece", "sentencepiece"), ("protobuf", "google.protobuf")])
def test_a_missing_package_is_named_with_the_extra(good, monkeypatch, package, module):
    import coin.models.tokenizer_check as tc

    real = tc._installed
    monkeypatch.setattr(tc, "_installed", lambda m: m != module and real(m))
    with pytest.raises(TokenizerError, match=f"needs the {package} package") as e:
        check_tokenizer_files(good)
    assert 'pip install -e ".[real]"' in str(e.value) and str(good) in str(e.value)


def test_a_tokenizer_json_alone_is_enough(good, tmp_path):
    fast = tmp_path / "fast"
    load_tokenizer(good).save_pretrained(fast)
    (fast / "tokenizer.model").unlink(missing_ok=True)
    (fast / "config.json").write_text((good / "config.json").read_text())
    assert (fast / "tokenizer.json").is_file() and json.loads((fast / "tokenizer_config.json").read_text())[
        "tokenizer_class"] in ("LlamaTokenizer", "LlamaTokenizerFast")
    check_tokenizer_files(fast)
    assert len(load_tokenizer(fast)) == VOCAB


def test_package_errors_from_transformers_name_the_folder_and_its_files(good, monkeypatch):
    from transformers import AutoTokenizer

    def fail(*a, **k):
        raise ValueError("`tiktoken` is required to read a `tiktoken` file.")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fail)
    with pytest.raises(TokenizerError, match="files present: config.json, tokenizer.model, tokenizer_config.json"):
        load_tokenizer(good)


def test_a_tiny_tokenizer_for_a_large_vocab_is_refused(good, tmp_path, monkeypatch):
    """The last line of defence, for a file the check cannot see (a class transformers does not name)."""
    import coin.models.tokenizer_check as tc

    broken = _copy(good, tmp_path / "vicuna", drop="tokenizer.model")
    monkeypatch.setattr(tc, "check_tokenizer_files", lambda folder: None)
    with pytest.raises(TokenizerError, match=f"has 3 tokens but config.json's vocab_size is {VOCAB}"):
        load_tokenizer(broken)


def test_the_error_exits_2_from_model_assemble(good, tmp_path, capsys):
    assert exit_code(TokenizerError("x")) == 2  # a PartsError: the user's to fix
    lm = _copy(good, tmp_path / "vicuna", drop="tokenizer.model")
    from test_llava_parts import write_parts

    parts = write_parts(tmp_path / "parts")
    code = main(["model", "assemble", "--lm", str(lm), "--vision", str(parts["vision"]),
                 "--projector", str(parts["projector"]), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"coin: error: tokenizer folder {lm}: tokenizer.model is missing" in capsys.readouterr().err


@pytest.mark.parametrize("drop", [None, "tokenizer.model"])
def test_the_dry_run_names_a_broken_tokenizer_folder(good, tmp_path, micro_config, drop, capsys):
    lm = _copy(good, tmp_path / "vicuna", drop=drop)
    (tmp_path / "clip").mkdir()
    (tmp_path / "mm_projector.bin").write_bytes(b"stand-in")
    cfg = {k: v for k, v in micro_config.items() if k != "model"}
    cfg["model"] = {"name": "llava-pretrain", "lm_path": str(lm), "vision_path": str(tmp_path / "clip"),
                    "projector_path": str(tmp_path / "mm_projector.bin")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["run", "--config", str(tmp_path / "run.yaml"), "--dry-run", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    if drop is None:
        assert code == 0 and f"  tokenizer {lm}: ok (LlamaTokenizer)" in out and "MISSING" not in out
    else:
        assert code == 1
        assert f"  tokenizer {lm}: tokenizer.model is missing" in out
        assert f"MISSING (1):\n  tokenizer folder {lm}: tokenizer.model is missing" in out
    assert not (tmp_path / "out").exists()
