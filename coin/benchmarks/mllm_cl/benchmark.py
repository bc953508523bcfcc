"""MLLM-CL: domain (RS → Med → AD → Sci → Fin) and ability (OCR → Math → VP → APP) continual learning.

Layout (the ``MLLM-CL/MLLM-CL`` dataset as SPEC section 10 records it; ``data.root`` is the
folder holding ``Domain_data/`` or the ability folders, or that folder itself)::

    Domain_data/<D>/{images/, train.json, test.json}          mllm-dcl
    <X>/{images/, train.json}  and  <X>_test/{images/, test.json}   mllm-acl

The scripts spell some test folders differently (``math_test``, ``CV-Benchv2`` for VP):
every spelling is tried. The domain folders' names beyond the paper's abbreviations could
not be confirmed; the long names (``RemoteSensing``, ``Medical``...) are tried too.

Image paths: each file's records are read relative to one image root (``data.image_root``,
default ``data.root``), and a path the file gives relative to its own folder is rewritten
to be relative to that root: the first of (the path as given, ``<file's folder>/<path>``,
``<file's folder>/images/<path>``) under which the file's first images exist; when none does
(images not there yet), ``<file's folder>/<path>`` for a path starting ``images/``, else
``<file's folder>/images/<path>``. Which of these the released files use could not be
confirmed. The rewritten path is then checked like any other (relative, inside the root).

Fin's prompts end with a format line chosen from the gold answer in MLLM-CL's code (a leak:
the prompt tells the model what kind of answer is right). coin replaces the last line of
every Fin prompt, in training and test, by one fixed line when it is such an instruction,
and appends the fixed line when the prompt has none. APP (MMT-Bench) has no public answers:
its test records may lack ``answer`` and are kept for a submission file.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from coin.benchmarks.spec import BENCHMARKS, BenchmarkSpec
from coin.data.sample import Sample
from coin.tasks.protocol_sets import resolve
from coin.benchmarks.mllm_cl.submission import SUBMISSION
from coin.benchmarks.mllm_cl.tasks.fin import FIN_LINE

if TYPE_CHECKING:
    from coin.config import DataConfig

DOMAIN = ("RS", "Med", "AD", "Sci", "Fin")
ABILITY = ("OCR", "Math", "VP", "APP")
DOMAIN_FOLDERS = {"RS": ("RS", "RemoteSensing", "Remote_Sensing"), "Med": ("Med", "Medical"),
                  "AD": ("AD", "AutonomousDriving", "Autonomous_Driving"), "Sci": ("Sci", "Science"),
                  "Fin": ("Fin", "Finance")}
ABILITY_FOLDERS = {"OCR": ("OCR",), "Math": ("Math", "math"), "VP": ("VP", "CV-Bench"), "APP": ("APP",)}
ABILITY_TEST_FOLDERS = {"OCR": ("OCR_test",), "Math": ("math_test", "Math_test"),
                        "VP": ("CV-Benchv2", "VP_test", "CV-Bench_test"), "APP": ("APP_test",)}
_INSTRUCTION = re.compile(r"^(?:please\s+)?(?:answer|respond|reply|give|output|provide)\b", re.I)
_PROBE = 20  # records looked at to decide how a file's image paths are rooted


def fin_prompt(prompt: str) -> str:
    """A Fin prompt with its format line replaced by ``FIN_LINE`` (appended when it has none)."""
    lines = prompt.rstrip().split("\n")
    if len(lines) > 1 and _INSTRUCTION.match(lines[-1].strip()) and len(lines[-1].split()) <= 30:
        lines = lines[:-1]
    return "\n".join(lines + [FIN_LINE])


def _rooted(rows: list, path: Path, image_root: Path) -> list:
    """``rows`` with image paths relative to ``image_root`` (see the module doc); paths left as given
    when the file is not under the image root."""
    try:
        folder = Path(os.path.relpath(path.parent.resolve(), image_root.resolve()))
    except ValueError:  # another drive
        return rows
    if folder.as_posix().startswith(".."):
        return rows
    images = [r["image"] for r in rows[:_PROBE] if isinstance(r, dict) and isinstance(r.get("image"), str)]
    prefixes = ("", folder.as_posix(), (folder / "images").as_posix())
    chosen = next((p for p in prefixes if images and any((image_root / p / i).is_file() for i in images)), None)
    out = []
    for r in rows:
        if isinstance(r, dict) and isinstance(r.get("image"), str) and r["image"] and not r["image"].startswith("/"):
            prefix = chosen if chosen is not None else prefixes[1 if r["image"].startswith("images/") else 2]
            r = {**r, "image": f"{prefix}/{r['image']}" if prefix not in ("", ".") else r["image"]}
        out.append(r)
    return out


class MllmClBenchmark(BenchmarkSpec):
    """What both MLLM-CL streams share: image paths rooted per file, Fin's prompt fix, APP's missing answers."""

    sources = "the MLLM-CL/MLLM-CL dataset (bjzhb666/MLLM-CL)"

    def prepare_rows(self, task: str, split: str, rows: list, path: Path | None = None,
                     image_root: Path | None = None) -> list:
        if path is not None and image_root is not None:
            rows = _rooted(rows, Path(path), Path(image_root))
        if split == "test" and resolve(task)["paper"].answers == SUBMISSION:
            rows = [{**r, "answer": r.get("answer") or None} if isinstance(r, dict) else r for r in rows]
        return rows

    def prepare(self, task: str, split: str, items: list, root: Path, cfg: DataConfig | None) -> list:
        if task != "Fin":
            return items
        if split == "train":
            return [replace(s, prompt=fin_prompt(s.prompt)) if isinstance(s, Sample) else s for s in items]
        return [replace(r, text=fin_prompt(r.text)) for r in items]


class DomainBenchmark(MllmClBenchmark):
    """MLLM-CL domain continual learning: remote sensing, medical, autonomous driving, science, finance."""

    name = "mllm-dcl"
    doc = "MLLM-CL domain stream: RS → Med → AD → Sci → Fin, per-domain substring and exact rules"
    orders = {"paper": DOMAIN}

    def candidates(self, root: Path, task: str, split: str) -> list[Path]:
        return [base / folder / f"{split}.json" for base in (root / "Domain_data", root)
                for folder in DOMAIN_FOLDERS[task]]


class AbilityBenchmark(MllmClBenchmark):
    """MLLM-CL ability continual learning: OCR, math, vision-centric perception, GUI agents (APP: unscored)."""

    name = "mllm-acl"
    doc = "MLLM-CL ability stream: OCR → Math → VP → APP; OCRBench, MathVista and substring rules, APP unscored"
    orders = {"paper": ABILITY}

    def candidates(self, root: Path, task: str, split: str) -> list[Path]:
        folders = ABILITY_FOLDERS[task] if split == "train" else ABILITY_TEST_FOLDERS[task]
        return [base / folder / f"{split}.json" for base in (root / "Ability_data", root) for folder in folders]


DCL = BENCHMARKS.register(DomainBenchmark())
ACL = BENCHMARKS.register(AbilityBenchmark())
