"""The models folder: where trained models are saved, listed and described.

The folder is ``$MNIST_NET_MODELS_DIR`` if set, else ``models/`` in the project root
(never committed). A new model gets a file name carrying its time and test accuracy,
written atomically and never overwriting another file, even when two sessions save
in the same second. Non-goals: versioning, metadata databases, deleting models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .files import write_new
from .model_io import model_to_bytes
from .network import MLP

ENV_VAR = "MNIST_NET_MODELS_DIR"
SUFFIX = ".pkl"
_NAME_RE = re.compile(r"^mnist-(\d{8}-\d{6})(?:-acc(\d+(?:\.\d+)?))?(?:-\d+)?\.pkl$")


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
        # Dot-files are temp files of saves in progress; empty files are reservations.
        if path.name.startswith(".") or path.suffix != SUFFIX or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_size == 0:
            continue
        match = _NAME_RE.match(path.name)
        acc = float(match.group(2)) / 100 if match and match.group(2) else None
        found.append(SavedModel(path, datetime.fromtimestamp(stat.st_mtime, UTC), acc))
    return sorted(found, key=lambda m: (m.modified, m.name), reverse=True)


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


def model_facts(model: MLP) -> dict[str, str]:
    """Human-readable facts about a model: layers, activation, accuracy, when and how trained."""
    facts = {
        "Layers": " → ".join(str(s) for s in model.layer_sizes),
        "Activation": model.activation,
    }
    acc = model.metrics_.get("test_accuracy")
    facts["Test accuracy"] = f"{100 * acc:.2f}%" if isinstance(acc, (int, float)) else "not recorded"
    trained_at = model.info_.get("trained_at")
    facts["Trained"] = _readable_time(trained_at) if trained_at else "not recorded"
    if model.info_.get("source"):
        facts["Source"] = str(model.info_["source"])
    return facts


def _readable_time(iso: str) -> str:
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
        return when.strftime("%Y-%m-%d %H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M")
