"""Finished runs kept in a scratch folder, so a server restart does not lose a user's results.

``RunStore(folder)`` keeps, per user (a sub-folder named by the user's id, which holds only
URL-safe characters), one file per finished run that has a model: ``<run id>.npz``, plain
arrays read with ``allow_pickle=False``: the model's bytes (the safe model file format,
checked on reading by ``model_from_bytes``), the run's facts as JSON (number, name, kind,
what it continues, status, times, note, a fine-tune's figures, the kept file's name and
version) and its test evaluation with the mistake images. Each file is written atomically
(``files.write_atomic``) and rewritten when the run is kept, renamed or its file deleted.
Bounds: a file older than ``max_age_days`` is deleted when its user's runs are read; at most
``max_per_user`` files per user and ``max_bytes`` in all (the oldest go first); a file
larger than ``MAX_FILE_BYTES`` is not read. A file that does not read back (truncated, from
another version, tampered with) is deleted and skipped: losing a scratch run is no worse
than before this store existed. The folder is the server's own scratch space, not the
models folder: nothing here is listed on the draw page.
Runs still training are not here: ``runs.RunRegistry`` stores them as stopped runs on a clean
shutdown, and a training process whose server was killed writes its own run here
(``worker.keep_orphaned_result``). Non-goals: sharing between users, several servers writing
one folder.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomic
from .metrics import Evaluation
from .model_io import ModelFileError, model_from_bytes
from .network import Network

MAX_FILE_BYTES = 64 * 1024**2  # the largest model the server trains is far smaller
MAX_MISTAKES = 100
RUN_STATUSES = ("done", "stopped")  # only these end with a model
RUN_KINDS = ("training", "train more", "fine-tune")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EVAL_ARRAYS = {  # name: (dtype kind, shape with m for the number of mistakes)
    "confusion": ("i", (10, 10)),
    "per_class": ("f", (10,)),
    "mistakes": ("i", ("m",)),
    "mistake_predicted": ("i", ("m",)),
    "mistake_probability": ("f", ("m",)),
    "mistake_images": ("u", ("m", 784)),
    "mistake_labels": ("iu", ("m",)),
}
_MEMBERS = {"model", "facts", *_EVAL_ARRAYS}


def default_folder() -> Path:
    """``$MNIST_NET_RUNS_DIR``, else ``runs`` in the user's cache folder (``$XDG_CACHE_HOME`` or ~/.cache)."""
    if folder := os.environ.get("MNIST_NET_RUNS_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnist_net" / "runs"


class RunStoreError(ValueError):
    """A stored run that cannot be read back."""


@dataclass(frozen=True)
class StoredRun:
    """One finished run as read back: ``facts`` (see the module docstring), the model and its bytes,
    the test evaluation (None for a fine-tune) with the mistake images (m, 784) uint8 and labels."""

    run_id: str
    facts: dict[str, Any]
    model: Network
    model_bytes: bytes
    evaluation: Evaluation | None
    mistake_images: np.ndarray | None
    mistake_labels: np.ndarray | None


def run_file_bytes(
    facts: dict[str, Any],
    model_bytes: bytes,
    evaluation: Evaluation | None,
    mistake_images: np.ndarray | None,
    mistake_labels: np.ndarray | None,
) -> bytes:
    """The bytes of one stored run's .npz (``read_run_file`` reads them back)."""
    facts = dict(facts)
    arrays: dict[str, np.ndarray] = {
        "model": np.frombuffer(model_bytes, np.uint8),
    }
    if evaluation is not None and mistake_images is not None and mistake_labels is not None:
        facts["evaluation"] = {"accuracy": float(evaluation.accuracy), "n": int(evaluation.n)}
        arrays.update(
            confusion=np.asarray(evaluation.confusion, np.int64),
            per_class=np.asarray(evaluation.per_class, np.float64),
            mistakes=np.asarray(evaluation.mistakes, np.int64),
            mistake_predicted=np.asarray(evaluation.mistake_predicted, np.int64),
            mistake_probability=np.asarray(evaluation.mistake_probability, np.float64),
            mistake_images=np.asarray(mistake_images, np.uint8),
            mistake_labels=np.asarray(mistake_labels, np.int64),
        )
    else:
        facts["evaluation"] = None
    arrays["facts"] = np.frombuffer(json.dumps(facts, allow_nan=True).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def read_run_file(run_id: str, data: bytes) -> StoredRun:
    """One stored run from its file's bytes; RunStoreError says what is wrong with them."""
    if len(data) > MAX_FILE_BYTES:
        raise RunStoreError(f"{len(data):,} bytes; at most {MAX_FILE_BYTES:,} are read")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = {i.filename.removesuffix(".npy") for i in zf.infolist()}
            if not names <= _MEMBERS or not {"model", "facts"} <= names:
                raise RunStoreError(f"unexpected members {sorted(names)}")
            if sum(i.file_size for i in zf.infolist()) > MAX_FILE_BYTES:
                raise RunStoreError("its members unpack to more than the size cap")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in names}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        if isinstance(e, RunStoreError):
            raise
        raise RunStoreError(f"not a readable run file: {e}") from None
    try:
        facts = json.loads(arrays["facts"].astype(np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunStoreError(f"its facts are not JSON: {e}") from None
    facts = checked_facts(facts)
    model_bytes = arrays["model"].astype(np.uint8).tobytes()
    try:
        model = model_from_bytes(model_bytes)
    except ModelFileError as e:
        raise RunStoreError(f"its model does not load: {e}") from None
    evaluation, images, labels = _checked_evaluation(facts.get("evaluation"), arrays)
    return StoredRun(run_id, facts, model, model_bytes, evaluation, images, labels)


def _checked_evaluation(summary, arrays: dict[str, np.ndarray]):
    if summary is None:
        if set(arrays) & set(_EVAL_ARRAYS):
            raise RunStoreError("evaluation arrays without an evaluation")
        return None, None, None
    if not isinstance(summary, dict) or set(summary) != {"accuracy", "n"}:
        raise RunStoreError("a malformed evaluation")
    accuracy, n = summary["accuracy"], summary["n"]
    if not (isinstance(accuracy, float) and 0 <= accuracy <= 1 and isinstance(n, int) and 0 < n <= 10**6):
        raise RunStoreError("a malformed evaluation")
    if set(arrays) & set(_EVAL_ARRAYS) != set(_EVAL_ARRAYS):
        raise RunStoreError("evaluation arrays are missing")
    m = len(arrays["mistakes"])
    if m > MAX_MISTAKES:
        raise RunStoreError(f"{m} mistakes; at most {MAX_MISTAKES}")
    for name, (kinds, shape) in _EVAL_ARRAYS.items():
        a = arrays[name]
        want = tuple(m if s == "m" else s for s in shape)
        if a.dtype.kind not in kinds or a.shape != want:
            raise RunStoreError(f"{name} has dtype {a.dtype} and shape {a.shape}")
    if not np.all(np.isfinite(arrays["mistake_probability"])) or arrays["confusion"].min() < 0:
        raise RunStoreError("evaluation values out of range")
    for name in ("mistakes", "mistake_predicted", "mistake_labels"):
        if m and (arrays[name].min() < 0 or arrays[name].max() >= (n if name == "mistakes" else 10)):
            raise RunStoreError(f"{name} out of range")
    evaluation = Evaluation(
        accuracy=accuracy,
        confusion=arrays["confusion"].astype(np.int64),
        per_class=arrays["per_class"].astype(np.float64),
        mistakes=arrays["mistakes"].astype(np.int64),
        mistake_predicted=arrays["mistake_predicted"].astype(np.int64),
        mistake_probability=arrays["mistake_probability"].astype(np.float64),
        n=n,
    )
    return evaluation, arrays["mistake_images"].astype(np.uint8), arrays["mistake_labels"].astype(np.int64)


def _text(value, limit: int, optional: bool = True) -> bool:
    return (optional and value is None) or (isinstance(value, str) and len(value) <= limit)


def _time(value) -> bool:
    return value is None or (isinstance(value, float) and math.isfinite(value) and 0 <= value < 2**33)


def checked_facts(facts) -> dict[str, Any]:
    """The facts of a stored run if every field has the type and range this module writes; else RunStoreError."""
    if not isinstance(facts, dict):
        raise RunStoreError("its facts are not a dictionary")
    kept = facts.get("kept")
    checks = {
        "number": isinstance(facts.get("number"), int) and 1 <= facts["number"] < 10**9,
        "name": _text(facts.get("name"), 200),
        "kind": facts.get("kind") in RUN_KINDS,
        "based_on": _text(facts.get("based_on"), 200),
        "based_on_id": facts.get("based_on_id") is None or bool(_ID_RE.match(str(facts["based_on_id"]))),
        "status": facts.get("status") in RUN_STATUSES,
        "note": _text(facts.get("note"), 1000),
        "created": _time(facts.get("created")) and facts.get("created") is not None,
        "started": _time(facts.get("started")),
        "finished_at": _time(facts.get("finished_at")),
        "tuning": facts.get("tuning") is None or isinstance(facts["tuning"], dict),
        "kept": kept is None
        or (
            isinstance(kept, dict)
            and set(kept) == {"name", "version"}
            and _text(kept["name"], 255, optional=False)
            and "/" not in kept["name"]
            and isinstance(kept["version"], list)
            and all(isinstance(v, int) for v in kept["version"])
        ),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise RunStoreError(f"its facts have bad fields: {', '.join(bad)}")
    return facts


class RunStore:
    """A scratch folder of finished runs, per user; see the module docstring. Not thread-safe on its
    own: ``runs.RunRegistry`` calls it under its locks."""

    def __init__(
        self,
        folder: str | os.PathLike,
        max_age_days: float = 7.0,
        max_per_user: int = 10,
        max_bytes: int = 1024**3,
    ) -> None:
        self.folder = Path(folder)
        self.max_age_seconds = max_age_days * 86400
        self.max_per_user, self.max_bytes = max_per_user, max_bytes

    def settings(self) -> dict[str, Any]:
        """What makes the same store in another process: ``RunStore(**store.settings())``."""
        return {
            "folder": str(self.folder),
            "max_age_days": self.max_age_seconds / 86400,
            "max_per_user": self.max_per_user,
            "max_bytes": self.max_bytes,
        }

    def _path(self, user: str, run_id: str) -> Path:
        if not _ID_RE.match(user) or not _ID_RE.match(run_id):
            raise ValueError("user and run ids must be URL-safe ids")
        return self.folder / user / f"{run_id}.npz"

    def save(self, user: str, run_id: str, data: bytes) -> Path:
        """Write (or rewrite) one run's file (``run_file_bytes``), then apply the bounds."""
        path = self._path(user, run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, what="run")
        self._bound()
        return path

    def delete(self, user: str, run_id: str) -> None:
        try:
            self._path(user, run_id).unlink()
        except (FileNotFoundError, ValueError):
            pass

    def version(self, user: str) -> int | None:
        """Changes whenever a file of ``user``'s is added, replaced or removed (the folder's mtime); None: no folder."""
        try:
            return os.stat(self.folder / user).st_mtime_ns if _ID_RE.match(user) else None
        except OSError:
            return None

    def load(self, user: str) -> list[StoredRun]:
        """``user``'s stored runs, oldest first; expired and unreadable files are deleted."""
        folder = self.folder / user
        if not _ID_RE.match(user) or not folder.is_dir():
            return []
        runs = []
        now = time.time()
        for path in sorted(folder.glob("*.npz"), key=_mtime):
            run_id = path.stem
            try:
                if now - path.stat().st_mtime > self.max_age_seconds or not _ID_RE.match(run_id):
                    path.unlink()
                    continue
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise RunStoreError("too large")
                runs.append(read_run_file(run_id, path.read_bytes()))
            except RunStoreError:
                path.unlink(missing_ok=True)
            except OSError:
                continue
        return sorted(runs, key=lambda r: r.facts["number"])

    def _bound(self) -> None:
        """Delete the oldest files beyond ``max_per_user`` per user and ``max_bytes`` in all."""
        files = []
        for folder in self.folder.iterdir() if self.folder.is_dir() else []:
            if not folder.is_dir():
                continue
            mine = sorted(folder.glob("*.npz"), key=_mtime)
            for old in mine[: max(0, len(mine) - self.max_per_user)]:
                old.unlink(missing_ok=True)
            files += mine[max(0, len(mine) - self.max_per_user) :]
        files.sort(key=_mtime)
        total = sum(_size(f) for f in files)
        for old in files:
            if total <= self.max_bytes:
                break
            total -= _size(old)
            old.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
