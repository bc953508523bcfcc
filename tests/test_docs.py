"""The documentation: a short README, a site that builds strictly, a reference that is current, a guide that runs.

- README.md stays under 250 lines and links only to pages and files that exist;
- ``mkdocs build --strict`` builds the site (docs/, mkdocs.yml), the examples/ files included whole;
- docs/reference.md equals ``coin ls --markdown`` of a clean install (regenerate it with that command);
- results/methods.md and results/findings.md, which docs/methods.md and docs/findings.md include, equal what
  ``coin table`` and ``coin findings`` write from the run files kept in results/;
- docs/own-data.md runs as written: its titled blocks are written to a folder and its commands run there.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _coin_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra: pip install -e '.[test]'")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    import html

    page = (tmp_path / "site" / "extending" / "index.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # the highlighted code as plain text
    for example in ("anchor.py", "colours_task.py", "shapes_benchmark.py", "mini_llava.py", "rslora.py"):
        body = (REPO / "examples" / example).read_text(encoding="utf-8")
        first = next(line for line in body.splitlines() if line.startswith(("class ", "def ", "TASKS.register")))
        assert first in text, f"examples/{example} is not on the extending page"


def test_the_reference_page_is_current():
    fresh = subprocess.run([sys.executable, "-m", "coin.cli", "ls", "--markdown"], cwd=REPO, capture_output=True,
                           text=True, timeout=300, env=_coin_env())
    assert fresh.returncode == 0, fresh.stderr
    assert (REPO / "docs" / "reference.md").read_text(encoding="utf-8") == fresh.stdout, (
        "docs/reference.md is stale: regenerate it with coin ls --markdown > docs/reference.md")


def test_the_method_table_is_what_coin_table_writes_from_the_kept_runs():
    """No cell of the method table is typed by hand: the page includes results/methods.md, and that file is
    ``coin table results/methods`` over the run files kept in results/methods/ (#32)."""
    from coin.report.method_table import method_table

    page = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    assert '--8<-- "results/methods.md"' in page
    kept = REPO / "results" / "methods.md"
    assert kept.read_text(encoding="utf-8") == method_table(REPO / "results" / "methods"), (
        "results/methods.md is stale: regenerate it with coin table results/methods --out results/methods.md")


def test_the_ewc_lambda_table_is_what_coin_table_writes_from_the_kept_runs():
    """The EWC λ study beside sequential LoRA (#32): docs/methods.md includes results/ewc-lambda.md, and that
    file is ``coin table results/studies/ewc-lambda results/methods/lora-s*`` over the kept run files."""
    from coin.report.method_table import method_table

    assert '--8<-- "results/ewc-lambda.md"' in (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    lora = sorted((REPO / "results" / "methods").glob("lora-s*"))
    assert len(lora) == 3
    fresh = method_table([REPO / "results" / "studies" / "ewc-lambda", *lora])
    assert (REPO / "results" / "ewc-lambda.md").read_text(encoding="utf-8") == fresh, (
        "results/ewc-lambda.md is stale: regenerate it with coin table results/studies/ewc-lambda "
        "results/methods/lora-s* --out results/ewc-lambda.md")


def test_the_findings_table_is_what_coin_findings_writes_from_the_kept_runs(monkeypatch):
    from coin.findings import findings, findings_markdown

    monkeypatch.chdir(REPO)  # the table names its run folders as the command was given them

    assert '--8<-- "results/findings.md"' in (REPO / "docs" / "findings.md").read_text(encoding="utf-8")
    fresh = findings_markdown(findings("results/methods", "results/studies"))
    assert (REPO / "results" / "findings.md").read_text(encoding="utf-8") == fresh, (
        "results/findings.md is stale: regenerate it with coin findings --methods results/methods "
        "--studies results/studies --out results/findings.md")


def _titled_blocks(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r'```\w+ title="([^"]+)"\n(.*?)```', text, re.S)}


def _commands(text: str) -> list[str]:
    section = text.split("## Check it, run it", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_own_data_guide_runs_as_written(tmp_path):
    guide = (REPO / "docs" / "own-data.md").read_text(encoding="utf-8")
    files = _titled_blocks(guide)
    assert set(files) == {"make_data.py", "my_tasks.py", "my-run.yaml"}
    assert len([line for line in files["my-run.yaml"].splitlines() if line.strip()]) <= 12  # a ten-line config
    project = tmp_path / "project"
    project.mkdir()
    for name, body in files.items():
        (project / name).write_text(body, encoding="utf-8")
    coin = [sys.executable, "-m", "coin.cli"]
    for line in _commands(guide):
        words = shlex.split(line)
        argv = coin + words[1:] if words[0] == "coin" else [sys.executable, *words[1:]]
        done = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=900, env=_coin_env())
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    import json

    matrix = json.loads((project / "runs" / "my-run" / "matrix.json").read_text())
    assert matrix["tasks"] == ["Shapes", "Sizes"] and matrix["matrix"][1][1] is not None
    # the config is read against its folder: it runs the same from elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(project, elsewhere / "copy", ignore=shutil.ignore_patterns("runs"))
    done = subprocess.run(coin + ["data", "check", "--config", str(elsewhere / "copy" / "my-run.yaml")],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300, env=_coin_env())
    assert done.returncode == 0, done.stdout + done.stderr
