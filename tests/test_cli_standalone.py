"""`coin score` and `coin metrics` on files made by any other tool."""

import json
from pathlib import Path

from coin.cli import main


def test_score_json_and_text(tmp_path, capsys):
    gt = [{"question_id": 1, "image": "a.png", "text": "Q?\nAnswer the question using a single word or phrase.",
           "answer": "two", "answers": ["2"] * 7 + ["3"] * 3},
          {"question_id": 2, "image": "b.png", "text": "Q?", "answer": "yes"},
          {"question_id": 3, "image": "c.png", "text": "Q?", "answer": "no"}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    preds = [{"question_id": 2, "text": "Yes."}, {"question_id": 1, "text": "Two"}, {"question_id": 3, "text": ""}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    assert main(["score", "--scorer", "vqa", "--predictions", str(tmp_path / "p.jsonl"),
                 "--ground-truth", str(tmp_path / "gt.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3 and out["correct"] == 2 and out["unparsable"] == 1
    assert abs(out["score"] - 200 / 3) < 1e-6  # "two" -> "2" matches 7 annotators: 1.0; "Yes." -> 1.0; "" -> 0
    assert main(["score", "--normalize", "Two dogs."]) == 0
    assert capsys.readouterr().out.strip() == "2 dogs"


def test_score_rejects_a_malformed_prediction(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps([{"question_id": 1, "image": "a", "text": "Q", "answer": "a"}]))
    (tmp_path / "p.jsonl").write_text('{"id": 1, "text": "a"}\n')
    try:
        main(["score", "--scorer", "exact", "--predictions", str(tmp_path / "p.jsonl"),
              "--ground-truth", str(tmp_path / "gt.json")])
    except SystemExit as e:
        assert "p.jsonl:1: a prediction needs 'question_id' and 'text'" in str(e)
    else:
        raise AssertionError("no error for a prediction without question_id")


def test_metrics_json_from_a_matrix_file(tmp_path, capsys):
    m = [[80.0, None, None], [60.0, 70.0, None], [50.0, 40.0, 90.0]]
    (tmp_path / "m.json").write_text(json.dumps(m))
    assert main(["metrics", str(tmp_path / "m.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["maa"] - (80 + 65 + 60) / 3) < 1e-9
    assert abs(out["bwt"] - (-30 - 30 + 0) / 3) < 1e-9 and out["acc"] == 60.0
    (tmp_path / "z.json").write_text(json.dumps({"matrix": m, "zero_shot": [5.0, 10.0, 0.0]}))
    assert main(["metrics", str(tmp_path / "z.json"), "--json", "--bwt-denominator", "T-1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bwt"] == -30.0 and out["zero_shot_mean"] == 5.0


def test_every_error_the_cli_catches_is_mapped_by_its_class():
    """``coin.cli`` maps errors to exit codes by class (``coin.errors``' ``exit_code``), not by their
    names: an error caught by its name would be missed silently the day its class moved."""
    from coin import errors
    from coin.cli import EXIT_CODES, INTERRUPTED, exit_code

    for cls, code in EXIT_CODES.items():
        assert isinstance(cls, type) and issubclass(cls, BaseException), f"{cls!r} is not an exception class"
        assert code in (2, 3, INTERRUPTED)
    for cls in errors.ERRORS:
        assert EXIT_CODES.get(cls) == cls.exit_code or cls.exit_code is None, cls
    # the codes the command line exits with, by class: the user's to fix (2), stopped (3), interrupted
    expected = {"ConfigError": 2, "OptionsError": 2, "DataError": 2, "FileFormatError": 2, "WriteError": 2,
                "RunFolderError": 2, "UntrustedPlugins": 2, "ImageError": 2, "UnknownNameError": 2, "PartsError": 2,
                "MissingPartError": 2, "TokenizerError": 2, "UnsupportedLaunch": 2, "JudgeError": 2,
                "ReferenceFileError": 2, "RequirementsError": 2, "NonFiniteLossError": 3, "CheckpointError": 3, "SweepError": 3,
                "IncomparableRuns": 2,
                "Interrupted": INTERRUPTED}
    assert {c.__name__: code for c, code in EXIT_CODES.items() if c.__module__ == "coin.errors"} == expected
    assert EXIT_CODES[FileNotFoundError] == 2 and EXIT_CODES[KeyboardInterrupt] == INTERRUPTED
    assert exit_code(errors.DataError("x")) == 2 and exit_code(FileNotFoundError("x")) == 2
    assert exit_code(errors.RecordError("x")) is None and exit_code(ValueError("x")) is None

    class PluginDataError(errors.DataError):  # a plugin's own kind of a coin error keeps its code
        pass

    assert exit_code(PluginDataError("x")) == 2


def test_a_users_mistake_ends_in_one_line(tmp_path, capsys):
    """Errors in ``EXIT_CODES`` end with ``coin: error: ...`` and exit 2, not a traceback."""
    assert main(["metrics", str(tmp_path / "missing.json")]) == 2
    assert "coin: error:" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("train: {lrr: 0.1}\n")
    assert main(["run", "--dry-run", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key 'train.lrr' (did you mean 'train.lr'?)" in capsys.readouterr().err


def test_light_commands_load_no_torch(tmp_path):
    """``coin metrics`` and ``coin score`` work on files alone: they start without loading torch
    (catching the engine's errors used to import it, and the model code, for every command)."""
    import subprocess
    import sys

    (tmp_path / "m.json").write_text(json.dumps([[80.0, None], [60.0, 70.0]]))
    code = ("import sys\nfrom coin.cli import main\n"
            f"assert main(['metrics', {str(tmp_path / 'm.json')!r}, '--json']) == 0\n"
            "assert main(['score', '--normalize', 'Two dogs.']) == 0\n"
            f"assert main(['metrics', {str(tmp_path / 'none.json')!r}]) == 2\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    root = Path(__file__).resolve().parents[1]  # coin importable as in the other subprocess tests
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
