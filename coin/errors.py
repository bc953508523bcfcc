"""Every error coin raises to its users, in one place, each with the exit code ``coin`` ends with.

``exit_code`` is what ``coin.cli.main`` returns for the error: 2, the user's to fix (a config, a
data file, a folder; the command printed ``coin: error: MESSAGE``); 3, a run stopped on purpose
(a NaN loss, a bad checkpoint, failed sweep runs: ``coin: stopped: MESSAGE``); 130, interrupted
(``Interrupted``, as for Ctrl-C: the command to resume is printed). ``None``: the command line
does not catch it, and it ends in a traceback (exit 1): an error that a caller turns into another
one (``RecordError`` into ``DataError``), that a command handles itself, or that names a missing
install or an unsupported model.

The modules that raise an error import it from here, and keep its name importable where it was
first defined (``from coin.data.coin_json import DataError`` still works). This module imports
nothing of coin: every layer may raise these.
"""

from __future__ import annotations

import errno

__all__ = [
    "ERRORS", "AnswerSourceError", "BankError", "CaptionMetricsError", "CheckpointError", "ConfigError", "DataError",
    "FileFormatError", "ImageError", "ImageTooLarge", "IncomparableRuns", "Interrupted", "JudgeError",
    "MissingPartError", "NonFiniteLossError", "OptionsError", "PartsError", "RecordError", "ReferenceFileError",
    "RequirementsError", "RoutingError", "RunFolderError", "SweepError", "TokenizerError", "UnknownNameError",
    "UnsupportedLaunch", "UntrustedPlugins", "VisionCacheRefused", "WriteError",
]


# ----------------------------------------------------------------------------- options, names, files
class OptionsError(ValueError):
    """Options that cannot be used; ``problems`` lists every issue found, each with its key."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str | None = None, what: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid {what}{where}:\n  - " + "\n  - ".join(self.problems))


class ConfigError(OptionsError):
    """A config that cannot run; ``problems`` lists every issue found.

    ``line``: the whole message, on one line, for an error about the file itself rather than its
    keys (``FILE: not valid UTF-8 at byte 12``; ``--set train.batch_size: ... not valid YAML``).
    """

    exit_code = 2

    def __init__(self, problems: list[str], source: str | None = None, line: str | None = None) -> None:
        super().__init__(problems, source, "config")
        if line is not None:
            self.args = (line,)


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message names the choices."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0])


class FileFormatError(ValueError):
    """A file that cannot be read as the text or JSON it should be; the message names the file."""

    exit_code = 2


_FULL = {errno.ENOSPC, errno.EDQUOT}


class WriteError(OSError):
    """A file that could not be written (a full disk, a read-only folder); the message names the file
    (``disk full writing PATH``), not the temp file beside it."""

    exit_code = 2

    def __str__(self) -> str:
        if self.errno in _FULL:
            return f"disk full writing {self.filename} ({self.strerror}); free space and run the same command again"
        return f"cannot write {self.filename} ({self.strerror})"


# ----------------------------------------------------------------------------- data
class DataError(ValueError):
    """A malformed data file or record; the message names the file and the record index."""

    exit_code = 2


class RecordError(ValueError):
    """One record's problem, in words relative to the record (no file, no index).

    Not caught by the command line: the readers turn it into a ``DataError`` naming the file."""

    exit_code = None


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than ``data.max_image_pixels`` (a decompression bomb).

    Not caught by the command line: the image loaders turn it into an ``ImageError`` (or a data
    check's problem line)."""

    exit_code = None


class AnswerSourceError(ValueError):
    """An answer file that cannot be read; the message names the file and the record.

    Not caught by the command line: a run's data loading turns it into a ``DataError``; ``coin score
    --answers`` ends with its message (exit 1)."""

    exit_code = None


class ReferenceFileError(DataError):
    """A caption reference file that is not in COCO annotation format; the message names it."""

    exit_code = 2


class CaptionMetricsError(RuntimeError):
    """The caption metrics cannot run here; the message names what to install."""

    exit_code = None


# ----------------------------------------------------------------------------- models
class PartsError(ValueError):
    """A part that cannot be assembled; the message names the file (and key) at fault."""

    exit_code = 2


class MissingPartError(PartsError, FileNotFoundError):
    """A part's folder or file does not exist."""

    exit_code = 2


class TokenizerError(PartsError):
    """A tokenizer folder that cannot give the model's tokenizer; the message names the folder and file."""

    exit_code = 2


class ImageError(ValueError):
    """An image that cannot be opened; the message names the file and the record."""

    exit_code = 2


class VisionCacheRefused(ValueError):
    """The vision feature cache cannot be used with this tower (the message says why).

    Not caught by the command line: a run logs it and evaluates without the cache."""

    exit_code = None


# ----------------------------------------------------------------------------- adapters
class BankError(RuntimeError):
    """The model cannot hold an adapter bank (no PEFT LoRA, or a LoRA layer of another kind)."""

    exit_code = None


class RoutingError(RuntimeError):
    """The backbone lacks what input routing needs (a decoder to stop at, an image token id)."""

    exit_code = None


# ----------------------------------------------------------------------------- runs
class UntrustedPlugins(RuntimeError):
    """A run folder's config names plugins, and the user did not ask for its code to run."""

    exit_code = 2


class RunFolderError(RuntimeError):
    """The output folder holds a run with a different config."""

    exit_code = 2


class RequirementsError(RuntimeError):
    """An installed package outside coin's requirements (coin.requirements); the message names each one and
    the pip command that installs it."""

    exit_code = 2


class UnsupportedLaunch(RuntimeError):
    """A launcher setting coin's training loop does not support (the message says what to use)."""

    exit_code = 2


class JudgeError(ValueError):
    """A judge request that does not fit the run folder (unknown stage or task, unmatched id)."""

    exit_code = 2


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the batch's sample ids."""

    exit_code = 3


class CheckpointError(RuntimeError):
    """A checkpoint that fails its checksum or cannot be read."""

    exit_code = 3


class SweepError(RuntimeError):
    """Some runs of a parallel sweep failed; the message names them and their logs."""

    exit_code = 3


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written first."""

    exit_code = 130


# ----------------------------------------------------------------------------- reports
class IncomparableRuns(ValueError):
    """Runs set side by side (``coin report``, ``coin findings``) that differ in more than their seeds, their
    method or a study's variable; the message names each key that differs, with its values and runs."""

    exit_code = 2


# every class above, each with its ``exit_code``
ERRORS: tuple[type[Exception], ...] = (
    OptionsError, ConfigError, UnknownNameError, FileFormatError, WriteError, DataError, RecordError, ImageTooLarge,
    AnswerSourceError, ReferenceFileError, CaptionMetricsError, PartsError, MissingPartError, TokenizerError,
    ImageError, VisionCacheRefused, BankError, RoutingError, UntrustedPlugins, RunFolderError, RequirementsError,
    UnsupportedLaunch, JudgeError, NonFiniteLossError, CheckpointError, SweepError, Interrupted, IncomparableRuns,
)
