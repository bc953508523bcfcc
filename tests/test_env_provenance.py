"""``env.json`` names coin's commit and whether the code that ran differed from it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from coin.engine.run_folder import git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(folder, *args):
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=folder, check=True,
                   capture_output=True)


def test_a_run_from_edited_code_says_so_beside_the_commit(tmp_path):
    pkg = tmp_path / "repo" / "coin"
    pkg.mkdir(parents=True)
    (pkg / "run.py").write_text("x = 1\n")
    (tmp_path / "repo" / "README.md").write_text("docs\n")
    _git(tmp_path / "repo", "init", "-q")
    _git(tmp_path / "repo", "add", "-A")
    _git(tmp_path / "repo", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True, text=True).stdout.strip()
    assert git_state(pkg) == (head, False)
    (tmp_path / "repo" / "README.md").write_text("edited docs\n")  # outside the package: its code is the commit's
    (pkg / "notes.txt").write_text("untracked\n")
    assert git_state(pkg) == (head, False)
    (pkg / "run.py").write_text("x = 2\n")  # the code that runs is not the commit's
    assert git_state(pkg) == (head, True)


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_state(tmp_path) == (None, None)
