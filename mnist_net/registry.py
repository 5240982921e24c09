"""The models folder: where trained models are saved, listed and described.

The folder is ``$MNIST_NET_MODELS_DIR`` if set, else ``models/`` in the project root
(never committed). A new model gets a file name carrying its time and test accuracy,
written atomically and never overwriting another file, even when two sessions save
in the same second. Non-goals: versioning, metadata databases, deleting models.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .files import write_new
from .model_io import model_to_bytes
from .network import MLP

ENV_VAR = "MNIST_NET_MODELS_DIR"
SUFFIX = ".pkl"
MAX_NAME = 200  # characters of a file name the app lists
MAX_FACT = 200  # characters of one fact shown about a model (file-supplied text is cut there)
# mnist-<time>[-acc<percent>][-2 (a repeat) or -my-run (the name a user kept it under)].pkl
_NAME_RE = re.compile(r"^mnist-(\d{8}-\d{6})(?:-acc(\d+(?:\.\d+)?))?(?:-[\w-]{1,64})?\.pkl$")


def models_dir() -> Path:
    """The models folder (not created here)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class SavedModel:
    """A model file in the models folder."""

    path: Path
    modified: datetime  # file modification time, UTC
    test_accuracy: float | None  # read from the file name; None if the name does not say
    # Changes whenever the file does, even if its modification time is set back: a cache key.
    version: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.path.name


def model_filename(when: datetime, test_accuracy: float | None) -> str:
    """E.g. ``mnist-20261128-110512-acc97.63.pkl`` (UTC time; accuracy in percent)."""
    stamp = when.astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    acc = f"-acc{100 * test_accuracy:.2f}" if test_accuracy is not None else ""
    return f"mnist-{stamp}{acc}{SUFFIX}"


def list_models(directory: str | os.PathLike | None = None) -> list[SavedModel]:
    """Model files in the folder, newest first. A missing folder means no models."""
    directory = Path(directory) if directory is not None else models_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        # Dot-files are temp files of saves in progress; empty files are reservations; a name
        # that is not valid UTF-8 (or too long to show) cannot be shown or sent to a browser.
        if path.name.startswith(".") or path.suffix != SUFFIX or not _showable(path.name):
            continue
        try:
            if not path.is_file():
                continue
            stat = path.stat()
        except OSError:  # vanished meanwhile, or a dangling link
            continue
        if stat.st_size == 0:
            continue
        match = _NAME_RE.match(path.name)
        acc = float(match.group(2)) / 100 if match and match.group(2) else None
        found.append(SavedModel(path, datetime.fromtimestamp(stat.st_mtime, UTC), acc, file_version(stat)))
    return sorted(found, key=lambda m: (m.modified, m.name), reverse=True)


def _showable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return len(name) <= MAX_NAME and name.isprintable()


def file_version(stat: os.stat_result) -> tuple[int, ...]:
    """What identifies one version of a file: inode, size, and modification *and* change times.

    Anyone can set a file's modification time back; its change time (ctime) is set by the
    system on every write, rename or replace, so a replaced file always gets a new version.
    """
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _candidate_names(base: str, tries: int = 1000) -> Iterator[str]:
    """``base``, then ``base`` with -2, -3, ... before the suffix."""
    yield base
    for attempt in range(2, tries + 1):
        yield f"{base[: -len(SUFFIX)]}-{attempt}{SUFFIX}"


def save_new_model(model: MLP, directory: str | os.PathLike | None = None, when: datetime | None = None) -> Path:
    """Save ``model`` under a new, unique name in the models folder and return its path.

    The name carries ``when`` (default now) and ``model.metrics_["test_accuracy"]``; a
    concurrent save of the same second gets ``-2``, ``-3``... (``files.write_new``: no file
    is ever overwritten or seen half-written).
    """
    directory = Path(directory) if directory is not None else models_dir()
    base = model_filename(when or datetime.now(UTC), model.metrics_.get("test_accuracy"))
    return write_new(directory, _candidate_names(base), model_to_bytes(model))


def rescue_dirs() -> list[Path]:
    """Where a model goes when the place it was meant for cannot be written: first that works wins."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist_net" / "rescued"
    return [models_dir(), cache, Path(tempfile.gettempdir()) / "mnist_net-rescued"]


def save_rescue_copy(model: MLP) -> Path:
    """Save ``model`` under a new name in the first rescue folder that can be written; OSError if none."""
    errors = []
    for folder in rescue_dirs():
        try:
            return save_new_model(model, folder)
        except OSError as e:
            errors.append(f"{folder}: {e.strerror or e}")
    raise OSError("; ".join(errors))


def model_facts(model: MLP) -> dict[str, str]:
    """Human-readable facts about a model: layers, activation, accuracy, when and how trained."""
    facts = {
        # A CNN's spec says what its layers are; its value counts per layer would not.
        "Layers": model.config.architecture.replace("->", "→")
        if model.config.layers
        else " → ".join(str(s) for s in model.layer_sizes),
        "Activation": model.activation,
    }
    acc = model.metrics_.get("test_accuracy")
    facts["Test accuracy"] = f"{100 * acc:.2f}%" if isinstance(acc, (int, float)) else "not recorded"
    trained_at = model.info_.get("trained_at")
    facts["Trained"] = _readable_time(trained_at) if trained_at else "not recorded"
    if model.info_.get("source"):
        facts["Source"] = str(model.info_["source"])
    return {name: _bounded(value) for name, value in facts.items()}


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_FACT else text[: MAX_FACT - 1] + "…"


def _readable_time(iso: object) -> str:
    try:
        when = datetime.fromisoformat(str(iso)[:40])
    except ValueError:
        return _bounded(str(iso))
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
        return when.strftime("%Y-%m-%d %H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M")
