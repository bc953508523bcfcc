"""CoIN: the eight tasks of the paper in its released layout, with its three instruction families.

Where a task's files are (``locate``), first found wins:

1. ``data.paths.<Task>.{train,test}`` when set, used as it is;
2. for a family other than Original, the family's own released folder, used as released (the
   paper's own prompts): ``Instructions_Diverse/`` (older README: ``Instruction_Type2``) or
   ``Instructions_10Type/``;
3. for the training file under Qwen-VL's file set (``data.file_set: qwen``, which ``auto`` means
   for the ``qwen-vl-chat`` backbone), ``Instructions_Qwen/<Task>/train.json``: the conversations
   the original trained Qwen-VL on, roles ``user``/``assistant`` read as ``human``/``gpt`` and the
   ``<img>path</img>`` marker as the record's image (``prepare_rows``). The original evaluated
   Qwen-VL on the same test files as LLaVA, so the test split never reads this folder;
4. the Original files, ``Instructions_Original/`` (also ``Instruction_Original``,
   ``Instruction_Type1``), used as released, or for a family whose folder is not there
   rewritten with coin's lines of that family (``coin.tasks.instructions``), which the
   source's ``origin`` says ("rewritten with coin's diverse instruction lines (no
   Instructions_Diverse/ under ROOT)"): the dry run, the run log and the report repeat it.

In each folder the task's test file may have any name its ``TaskSpec.test_files`` lists, in
order (TextVQA, VizWiz and VQAv2 were read from ``val.json`` by the original). ``SOURCES``
is the table of where every part of the data comes from and the commands that fetch it; the
dry run prints the commands of what is missing.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from coin.benchmarks.spec import BENCHMARKS, BenchmarkSpec, Fetch, Sources, TaskSource, owner, path_override
from coin.data.coin_json import DataError
from coin.tasks import TASKS, get_task
from coin.tasks.instructions import get_family
from coin.tasks.orders import ORDERS

if TYPE_CHECKING:
    from coin.config import DataConfig

# every spelling of a family's folder seen in the release and its READMEs, the release's own first
FAMILY_DIRS = {
    "original": ("Instructions_Original", "Instruction_Original", "Instructions_Type1", "Instruction_Type1"),
    "diverse": ("Instructions_Diverse", "Instruction_Diverse", "Instructions_Type2", "Instruction_Type2"),
    "10type": ("Instructions_10Type", "Instruction_10Type", "Instructions_10type", "Instruction_10type"),
}
QWEN_DIRS = ("Instructions_Qwen", "Instruction_Qwen")  # Qwen-VL's training conversations (user/assistant)

# data.file_set: which of the release's file sets the training prompts are read from. "auto": the
# backbone's (BACKBONE_FILE_SETS; bound into the config by bind_file_set), else the LLaVA files
FILE_SETS = ("auto", "llava", "qwen")
BACKBONE_FILE_SETS = {"qwen-vl-chat": "qwen"}

# ------------------------------------------------------------------ where the data comes from
_COCO = "http://images.cocodataset.org/zips"


def _zip(url: str, folder: str) -> tuple[str, ...]:
    """Download ``url`` into ``{image_root}/<folder>`` and unpack it there."""
    name = url.rsplit("/", 1)[1]
    return (f"wget -c {url} -P {{image_root}}/{folder}",
            f"unzip -q {{image_root}}/{folder}/{name} -d {{image_root}}/{folder}")


COCO_TRAIN2014 = Fetch("COCO train2014 images", "COCO2014/train2014", _zip(f"{_COCO}/train2014.zip", "COCO2014"))
COCO_VAL2014 = Fetch("COCO val2014 images", "COCO2014/val2014", _zip(f"{_COCO}/val2014.zip", "COCO2014"),
                     optional=True)
COCO_TEST2015 = Fetch("COCO test2015 images", "COCO2014/test2015", _zip(f"{_COCO}/test2015.zip", "COCO2014"),
                      optional=True)

SOURCES = Sources(
    release=Fetch("the released CoIN instruction files (Instructions_Original/, Instructions_Diverse/, "
                  "Instructions_10Type/, Instructions_Qwen/)", "",
                  ("huggingface-cli download Zacks-Chen/CoIN --repo-type dataset --local-dir {root}",),
                  under="root"),
    images={
        "ScienceQA": (Fetch("ScienceQA images", "ScienceQA", (
            "pip install gdown && gdown --folder https://drive.google.com/drive/folders/"
            "1w8imCXWYn2LxajmGeGH_g5DaL2rabHev -O {image_root}/ScienceQA",
            "# then unpack its train/val/test archives inside {image_root}/ScienceQA")),),
        "TextVQA": (Fetch("TextVQA train_val_images", "TextVQA/train_images", _zip(
            "https://dl.fbaipublicfiles.com/textvqa/images/train_val_images.zip", "TextVQA")),),
        "ImageNet": (Fetch("ImageNet (ILSVRC-2012) images", "ImageNet", (
            "# ImageNet needs an account: download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            "https://image-net.org/download-images",
            "# and unpack them under {image_root}/ImageNet (train/<wnid>/*.JPEG, val/...)")),),
        "GQA": (Fetch("GQA images", "GQA/images", _zip("https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip",
                                                        "GQA")),),
        "VizWiz": (Fetch("VizWiz train and val images", "VizWiz", (
            "wget -c https://vizwiz.cs.colorado.edu/VizWiz_final/images/train.zip -P {image_root}/VizWiz",
            "wget -c https://vizwiz.cs.colorado.edu/VizWiz_final/images/val.zip -P {image_root}/VizWiz",
            "unzip -q {image_root}/VizWiz/train.zip -d {image_root}/VizWiz && "
            "unzip -q {image_root}/VizWiz/val.zip -d {image_root}/VizWiz")),),
        "Grounding": (COCO_TRAIN2014,),  # RefCOCO, RefCOCO+, RefCOCOg: the released JSON holds the boxes
        "VQAv2": (COCO_TRAIN2014, COCO_VAL2014, COCO_TEST2015),
        "OCR-VQA": (Fetch("OCR-VQA images (book covers)", "OCR-VQA/images", (
            "pip install gdown && gdown --folder https://drive.google.com/drive/folders/"
            "1_GYPY5UkUy7HIcR0zq3ZCFgeZN7BAfm_ -O {image_root}/OCR-VQA",
            "# then run its loadDataset.py in {image_root}/OCR-VQA to download the covers into images/ "
            "(LLaVA saved every cover as .jpg)")),),
    },
    answers={"TextVQA": Fetch("TextVQA's official answers (ten per question)", "TextVQA_0.5.1_val.json", (
        "wget -c https://dl.fbaipublicfiles.com/textvqa/data/TextVQA_0.5.1_val.json -O {path}",), under="file")},
)


# ------------------------------------------------------------------ the file set (Qwen-VL's files)
def file_set(cfg: DataConfig | None) -> str:
    """``data.file_set`` as the layout reads it: "qwen" or "llava" ("auto" left unbound is the LLaVA files)."""
    value = str(getattr(cfg, "file_set", None) or "auto").lower()
    return "qwen" if value == "qwen" else "llava"


def bind_file_set(cfg: Any) -> list[str]:
    """``data.file_set: auto`` becomes the backbone's file set where it has its own (``qwen`` for
    ``qwen-vl-chat``), written into the config as ``bind_order`` writes the order (so ``config.yaml``
    says which files a run read, and a folder is not resumed on others); other backbones keep
    ``auto``. Returns the problems (none: a value not in ``FILE_SETS`` is named by
    ``file_set_problems``, the data section's own check)."""
    data = cfg.data
    if getattr(data, "file_set", "auto") == "auto" and data.benchmark == "coin":
        data.file_set = BACKBONE_FILE_SETS.get(getattr(cfg.model, "name", None), "auto")
    return []


def file_set_problems(cfg: DataConfig) -> list[str]:
    """``data.file_set`` not one of ``FILE_SETS``, or ``qwen`` on a benchmark other than CoIN."""
    value = getattr(cfg, "file_set", "auto")
    if value not in FILE_SETS:
        return [f"data.file_set must be one of {', '.join(FILE_SETS)}, got {value!r}"]
    if value == "qwen" and cfg.benchmark != "coin":
        return [f"data.file_set: qwen reads CoIN's Instructions_Qwen/; data.benchmark is {cfg.benchmark!r}"]
    return []


_IMG = re.compile(r"(?:Picture\s*\d+\s*:\s*)?<img>(.*?)</img>\s*", re.S)
_ROLES = {"user": "human", "assistant": "gpt", "human": "human", "gpt": "gpt"}


def qwen_image(raw: str, image_root: Path | None) -> str:
    """An ``<img>`` path of Qwen-VL's files relative to the image root: under it when absolute, or the
    part after the image root's own folder name (or the original's ``cl_dataset``) when it names one;
    else as written (the validator names an absolute path that stays outside)."""
    text = raw.strip().replace("\\", "/")
    p = PurePosixPath(text)
    if image_root is not None and p.is_absolute():
        for base in dict.fromkeys((Path(image_root), Path(image_root).resolve())):
            try:
                return str(PurePosixPath(Path(text).relative_to(base)))
            except ValueError:
                pass
    parts = [x for x in p.parts if x not in ("/", ".")]
    for anchor in (Path(image_root).name if image_root is not None else None, "cl_dataset"):
        if anchor and anchor in parts[:-1]:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor) + 1:])
    return "/".join(parts) if not p.is_absolute() else text


def is_qwen_row(row: object) -> bool:
    """A training record in Qwen-VL's form: a conversation with ``user``/``assistant`` (or ``system``) turns."""
    conv = row.get("conversations") if isinstance(row, dict) else None
    return isinstance(conv, list) and any(isinstance(t, dict) and t.get("from") in ("user", "assistant", "system")
                                          for t in conv)


def llava_row(row: dict, image_root: Path | None) -> dict:
    """A Qwen-VL training record in LLaVA's form: a leading system turn dropped, ``user``/``assistant``
    read as ``human``/``gpt``, the first ``<img>path</img>`` (with its "Picture 1:" label) taken out of
    the prompt and made the record's ``image`` (kept when the record has one), ``<image>`` put in its place."""
    turns = [dict(t) if isinstance(t, dict) else t for t in row["conversations"]]
    while turns and isinstance(turns[0], dict) and turns[0].get("from") == "system":
        turns = turns[1:]
    image = row.get("image")
    found = None
    for t in turns:
        if not isinstance(t, dict):
            continue
        t["from"] = _ROLES.get(t.get("from"), t.get("from"))
        value = t.get("value")
        if isinstance(value, str) and "<img>" in value:
            m = _IMG.search(value)
            if m is not None and found is None and t["from"] == "human":
                found = m.group(1)
            t["value"] = _IMG.sub("", value).strip()
    out = {**row, "conversations": turns}
    if image is None and found is not None:
        out["image"] = qwen_image(found, image_root)
    if out.get("image") is not None and turns and isinstance(turns[0], dict) and isinstance(turns[0].get("value"), str) \
            and "<image>" not in turns[0]["value"]:
        turns[0]["value"] = "<image>\n" + turns[0]["value"]
    return out


class CoinBenchmark(BenchmarkSpec):
    """CoIN (Chen et al.): ScienceQA, TextVQA, ImageNet, GQA, VizWiz, Grounding, VQAv2, OCR-VQA."""

    name = "coin"
    doc = "CoIN: eight vision-language tasks, the released JSON under data.root"
    sources = ("the released CoIN files (Instructions_Original/<Task>/{train,test|val}.json, Instructions_Diverse/, "
               "Instructions_10Type/, Instructions_Qwen/) and the source images")
    fetch = SOURCES
    families = True
    open_tasks = True
    orders = ORDERS  # coin.tasks.orders: paper, alphabet (and 'shuffle:<seed>')

    @property
    def tasks(self) -> tuple[str, ...]:
        """The paper's eight, then every registered task no other benchmark lists (a plugin's)."""
        own = tuple(ORDERS["paper"])
        return own + tuple(t for t in TASKS if t not in own and owner(t) is None)

    def config_problems(self, cfg: DataConfig) -> list[str]:
        return [] if cfg.root else [f"data.root is required when data.benchmark is {self.name!r}"]

    def locate(self, root: Path, family: str, task: str, split: str, cfg: DataConfig | None = None) -> TaskSource:
        """An override, the family's folder, Qwen-VL's file set, or the Original file (with the family to
        derive from it); each with its origin in words (the module's docstring gives the order)."""
        try:
            fam = get_family(family).name
        except KeyError as e:
            raise DataError(f"data.instructions: {e}") from None
        if (p := path_override(root, cfg, task, split)) is not None:
            if not p.is_file():
                raise DataError(f"task {task}: data.paths.{task}.{split} {p} does not exist")
            return TaskSource(p, None, f"(data.paths.{task}.{split})")
        spec = get_task(task)
        folders = tuple(dict.fromkeys((spec.folder, spec.name)))
        names = spec.split_files(split)
        looked: list[str] = []

        def find(dirs: tuple[str, ...]) -> Path | None:
            for d in dirs:
                for folder in folders:
                    for n in names:
                        c = root / d / folder / n
                        if c.is_file():
                            return c
                        looked.append(str(c))
            return None

        if fam != "original" and (p := find(FAMILY_DIRS.get(fam, ()))) is not None:
            return TaskSource(p, None, f"(as released: the paper's own {fam} prompts)")
        qwen_missing = ""
        if split == "train" and file_set(cfg) == "qwen":
            if (p := find(QWEN_DIRS)) is not None:
                if fam == "original":
                    return TaskSource(p, None, "(as released: Qwen-VL's file set, user/assistant turns read as "
                                               "human/gpt)")
                return TaskSource(p, fam, f"(Qwen-VL's file set) {self._rewritten(root, fam, spec.folder, split)}")
            qwen_missing = f"; no {QWEN_DIRS[0]}/{spec.folder}/train.json under {root}: the LLaVA files"
        if (p := find(FAMILY_DIRS["original"])) is not None:
            if fam == "original":
                return TaskSource(p, None, f"(as released{qwen_missing})")
            return TaskSource(p, fam, self._rewritten(root, fam, spec.folder, split, qwen_missing))
        raise DataError(f"task {task}: {split} file not found; looked for {', '.join(dict.fromkeys(looked))}")

    @staticmethod
    def _rewritten(root: Path, fam: str, folder: str, split: str, more: str = "") -> str:
        """Why a file's prompts are coin's lines of ``fam``: which released folder is not there."""
        dirs = FAMILY_DIRS.get(fam, ())
        there = [d for d in dirs if (root / d).is_dir()]
        if not dirs:
            why = f"the release has no {fam} folder"
        elif not there:
            why = f"no {dirs[0]}/ under {root}"
        elif not any((root / d / folder).is_dir() for d in there):
            why = f"no {there[0]}/{folder}/ under {root}"
        else:
            why = f"no {split} file in {there[0]}/{folder}/ under {root}"
        return f"rewritten with coin's {fam} instruction lines ({why}{more})"

    def expected(self, root: Path, cfg: DataConfig | None, task: str, split: str) -> Path:
        """The override, else the Original file (every family can be derived from it)."""
        spec = get_task(task)
        original = root / FAMILY_DIRS["original"][0] / spec.folder / spec.split_files(split)[0]
        return path_override(root, cfg, task, split) or original

    def prepare_rows(self, task: str, split: str, rows: list, path: Path | None = None,
                     image_root: Path | None = None) -> list:
        """Qwen-VL's training records (``Instructions_Qwen``) in LLaVA's form (``llava_row``); others as they are."""
        if split != "train" or not any(is_qwen_row(r) for r in rows):
            return rows
        return [llava_row(r, image_root) if is_qwen_row(r) else r for r in rows]


SPEC = BENCHMARKS.register(CoinBenchmark())
