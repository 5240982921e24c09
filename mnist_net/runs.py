"""The server's training runs: who started what, which may run now, and which models are kept.

A ``RunRegistry`` is one thread-safe object per server (the app holds it in
``st.cache_resource``). Every run belongs to a user, named by an unguessable id
(``new_user_id``, 192 random bits) that the app keeps in the browser; every method takes
that id and only ever shows, stops or changes that user's runs. A run is a
``jobs.TrainingJob`` (a child process) plus what the user decided about it. Bounds:

- at most ``max_running`` runs train at once on the whole server (2: this machine has 2
  cores); later ones wait in a first-come queue of at most ``max_waiting`` and start as
  soon as a slot frees. Waiting beats refusing for a class pressing Start together: every
  run gets its turn and the page says how many are ahead of it;
- one unfinished run per user (``max_active_per_user``), so nobody fills the queue;
- at most ``max_runs_per_user`` runs listed per user and ``max_runs`` in all, and at most
  ``max_model_bytes`` of finished models in memory: the oldest finished runs are dropped
  first (a kept model stays in the models folder);
- runs the server's budget refuses (``budget.refusal``) never start.

A run is a training from scratch (``submit``), more epochs of a finished run's model
(``submit_more``: a new run that says what it continues) or a fine-tune of any model on a
person's digits (``submit_fine_tune``, which names its base model); a running one can be paused and
resumed (a paused run keeps its slot; its process stops it after ``jobs``' longest pause).
A finished model lives only in its run until the user keeps it: ``keep`` saves it into the
models folder under a name made by ``registry.model_filename`` plus the user's name for it;
``rename`` and ``delete_kept`` act only on the very file this registry wrote (same folder,
same name pattern, same inode and times), never on another path.
Given a ``run_store.RunStore``, every finished run with a model is also written there and a
user's stored runs are read back the first time the user is seen (and again when their
folder changes), so a restart loses no finished run. A registry made with
``save_on_exit=True`` (the app's) also stops the runs still training when its process exits
normally (the server stopped with Ctrl-C or SIGTERM): each ends with the model it had then,
stored as a stopped run that says why, within ``SHUTDOWN_WAIT_S``. If the server is killed
outright (SIGKILL, the out-of-memory killer), each training process finds its server gone at
its next message, stops, scores its model and writes the run into the store itself
(``worker.keep_orphaned_result``): the restarted server lists it as stopped, saying why. A
power cut still loses the runs that were training.
Non-goals: resuming unfinished runs after a restart, accounts, sharing runs between users.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import sys
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .budget import TrainingCost, estimate_training_cost, refusal
from .config import TrainConfig
from .data import FILES
from .digitset import DigitSet
from .files import fsync_directory, write_new
from .finetune import FineTuneOptions
from .jobs import FINISHED, QUEUED, FineTuneJob, JobSnapshot, RestoredJob, TrainingJob
from .model_io import ModelFileError, model_from_bytes
from .network import MLP
from .registry import SUFFIX, file_version, model_filename, models_dir
from .run_store import RUN_STATUSES, RunStore, run_file_bytes

N_MNIST_TRAIN = FILES["train-images-idx3-ubyte.gz"][1]
USER_ID_BYTES = 24  # 192 random bits: 32 URL-safe characters
_USER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
TRAINING_RUN, MORE_RUN, FINE_TUNE_RUN = "training", "train more", "fine-tune"  # a run's kind
MAX_MORE_EPOCHS = 200  # as many as the train form allows
MAX_NAME = 60  # characters of a run's name as the user typed it
MAX_SLUG = 40  # characters of that name in a file name
# A run stopped by the server's shutdown finishes its batch and scores the test set: seconds
# for the networks the page trains. Below the 20 s a service manager usually waits before SIGKILL.
SHUTDOWN_WAIT_S = 15.0
SHUTDOWN_NOTE = (
    "The server was shut down while this run trained: it was stopped then, and this is the network at that moment."
)
# What this registry writes: registry.model_filename's name, then -<slug> (at most 40), then -2, -3... if taken.
_KEPT_NAME_RE = re.compile(r"^mnist-\d{8}-\d{6}(?:-acc\d+\.\d\d)?(?:-[\w-]{1,48})?\.pkl$")


class RunRefused(Exception):
    """A run or an action on it that the server will not do; the message says why, for a person."""


def new_user_id() -> str:
    """A fresh, unguessable user id (URL- and cookie-safe)."""
    return secrets.token_urlsafe(USER_ID_BYTES)


def valid_user_id(text: object) -> bool:
    """Whether ``text`` has the shape of an id from ``new_user_id`` (anything else is ignored)."""
    return isinstance(text, str) and bool(_USER_ID_RE.match(text))


def name_slug(name: str) -> str:
    """A user's name for a run as a safe piece of a file name: letters, digits, - and _ only.

    "My best net!" -> "My-best-net". Never contains a dot or a slash, so it cannot leave
    the models folder or change the suffix.
    """
    text = unicodedata.normalize("NFC", str(name))[:MAX_NAME]
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in text)
    slug = re.sub(r"-{2,}", "-", slug).strip("-_")
    return re.sub(r"[^\w-]", "", slug)[:MAX_SLUG].strip("-_")


def kept_file_names(when: datetime, test_accuracy: float | None, name: str) -> Iterator[str]:
    """``model_filename``'s name with ``-<slug>`` before the suffix, then -2, -3... for a taken name."""
    stem = model_filename(when, test_accuracy)[: -len(SUFFIX)]
    slug = name_slug(name)
    base = f"{stem}-{slug}" if slug else stem
    yield base + SUFFIX
    for attempt in range(2, 1000):
        yield f"{base}-{attempt}{SUFFIX}"


@dataclass(frozen=True)
class RunView:
    """What a page shows of one run at one moment."""

    id: str
    number: int  # 1, 2, 3... per user, in the order they started
    name: str | None  # the user's name for it (given when kept)
    config: TrainConfig
    snapshot: JobSnapshot
    kept_path: Path | None  # its file in the models folder, once kept
    queue_position: int | None  # runs ahead of it while it waits for a slot
    model_bytes: int  # size of its model file's bytes (0: no model)
    kind: str = "training"  # TRAINING_RUN, MORE_RUN or FINE_TUNE_RUN
    based_on: str | None = None  # the label of what it continues or tunes (None: a fresh network)
    based_on_id: str | None = None  # that run's id, if it was a run of this user

    @property
    def label(self) -> str:
        return self.name or f"Run {self.number}"

    @property
    def origin(self) -> str | None:
        """What it starts from, for people: 'continues Run 2', 'fine-tunes default'; None for a fresh network."""
        if self.based_on is None:
            return None
        return f"{'fine-tunes' if self.kind == FINE_TUNE_RUN else 'continues'} {self.based_on}"

    @property
    def has_model(self) -> bool:
        return self.model_bytes > 0

    @property
    def tuning(self) -> dict[str, Any] | None:
        """A finished fine-tune's figures (``RunRegistry.submit_fine_tune``); None otherwise."""
        return self.snapshot.tuning


@dataclass
class _Run:
    id: str
    user: str
    number: int
    job: TrainingJob
    name: str | None = None
    kind: str = "training"
    based_on: str | None = None  # the label of the run it continues, when it was submitted
    based_on_id: str | None = None
    kept_path: Path | None = None
    kept_version: tuple[int, ...] = ()
    files_lock: threading.Lock = field(default_factory=threading.Lock)  # keep / rename / delete, one at a time


@dataclass
class _User:
    started: int = 0  # runs ever started (numbers the next one)
    settings: dict[str, Any] = field(default_factory=dict)


class RunRegistry:
    """All runs of a server; thread-safe. See the module docstring for the rules and bounds."""

    def __init__(
        self,
        max_running: int = 2,
        max_waiting: int = 16,
        max_active_per_user: int = 1,
        max_runs_per_user: int = 10,
        max_runs: int = 200,
        max_model_bytes: int = 2 * 1024**3,
        max_users: int = 2000,
        job_factory: Callable[..., TrainingJob] = TrainingJob,
        store: RunStore | None = None,
        save_on_exit: bool = False,
    ) -> None:
        self.max_running, self.max_waiting = max_running, max_waiting
        self.max_active_per_user, self.max_runs_per_user = max_active_per_user, max_runs_per_user
        self.max_runs, self.max_model_bytes, self.max_users = max_runs, max_model_bytes, max_users
        self._job_factory = job_factory
        self._lock = threading.RLock()  # re-entered when a job ends while the registry starts another
        self._runs: dict[str, _Run] = {}  # insertion order: oldest first
        self._queue: deque[str] = deque()  # ids of runs waiting for a slot
        self._users: OrderedDict[str, _User] = OrderedDict()  # least recently used first
        self._store = store
        self._restored: dict[str, int | None] = {}  # user: the version of their stored runs read back
        if save_on_exit:  # after multiprocessing's own exit handler is registered, so it runs first
            atexit.register(self.stop_for_shutdown)

    # --- starting and stopping -------------------------------------------------------------
    def submit(self, user: str, config: TrainConfig, mnist_dir: str | os.PathLike, source: str = "train page") -> str:
        """Register a run of ``config`` for ``user``; it starts now or when a slot frees. Returns its id.

        Raises RunRefused (with a message for a person) if the server will not run it.
        """
        _check_user(user)
        return self._register(user, config, mnist_dir, source=source)

    def submit_more(self, user: str, run_id: str, epochs: int, mnist_dir: str | os.PathLike) -> str:
        """Train ``epochs`` more epochs of ``user``'s finished run's model, as a new run; returns its id.

        The new run starts from that model's weights and optimiser state; its epochs and history
        carry on from the model's (a stopped run's part-epoch is trained again). RunRefused if
        the run is not theirs, has no model, or the server will not run it.
        """
        base = self._owned_or_refuse(user, run_id)
        job = base.job
        if job.model is None or job.model_bytes is None:
            raise RunRefused("This run has no trained model to train more.")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= MAX_MORE_EPOCHS:
            raise RunRefused(f"Train 1 to {MAX_MORE_EPOCHS} more epochs.")
        config = replace(job.model.config, epochs=epochs)
        label = base.name or f"Run {base.number}"
        return self._register(
            user, config, mnist_dir, source=job.source, kind=MORE_RUN, based_on=label, based_on_id=base.id,
            base_model_bytes=job.model_bytes,
        )  # fmt: skip

    def submit_fine_tune(
        self,
        user: str,
        base_model_bytes: bytes,
        base_label: str,
        digits: DigitSet,
        mnist_dir: str | os.PathLike,
        options: FineTuneOptions | None = None,
    ) -> str:
        """Fine-tune the model in ``base_model_bytes`` on ``digits`` (a person's ``DigitSet``) as a run.

        Like any run: it waits for a slot, shows progress, can be stopped, and its model can be
        kept, renamed and deleted; its kind is FINE_TUNE_RUN and ``based_on`` is ``base_label``.
        A stratified third of each digit's examples is held out (none of a digit with fewer
        than 2). When it ends, ``RunView.tuning`` holds: ``held_out_before``, ``held_out_after``
        (accuracy on the held-out digits; None if none were held out), ``mnist_before``,
        ``mnist_after`` (MNIST test accuracy), ``flipped`` ({"wrong_to_right": [...],
        "right_to_wrong": [...]}: indices into ``digits`` of held-out digits), ``n_train``,
        ``n_held_out``. RunRefused (a message for a person) for bytes that are no model, an
        empty set, or what the server will not run.
        """
        _check_user(user)
        if not isinstance(digits, DigitSet) or len(digits) == 0:
            raise RunRefused("There are no digits to learn from yet.")
        try:
            base = model_from_bytes(bytes(base_model_bytes))
        except (ModelFileError, TypeError) as e:
            raise RunRefused(f"That model cannot be fine-tuned: {e}") from None
        opts = options or FineTuneOptions()
        images = opts.steps * opts.batch_size
        cost_config = replace(base.config, epochs=1, n_train=images, batch_size=opts.batch_size, augment=True)
        label = _clean_name(base_label) or "a model"
        return self._register(
            user, base.config, mnist_dir, source="fine-tune", kind=FINE_TUNE_RUN, based_on=label,
            cost=estimate_training_cost(cost_config, N_MNIST_TRAIN, n_val=2 * 10_000), factory=FineTuneJob,
            base_model_bytes=bytes(base_model_bytes), inputs=np.array(digits.inputs, np.float32),
            labels=np.array(digits.labels, np.int64), options=opts.to_dict(),
        )  # fmt: skip

    def _register(
        self,
        user: str,
        config: TrainConfig,
        mnist_dir: str | os.PathLike,
        source: str,
        kind: str = "training",
        based_on: str | None = None,
        based_on_id: str | None = None,
        cost: TrainingCost | None = None,
        factory: Callable[..., TrainingJob] | None = None,
        **job_options: Any,
    ) -> str:
        """Check the bounds, make the run's job and queue it; see ``submit``.

        ``cost``: what the run will cost (default: training ``config``); ``factory``: what makes its
        job (default: the registry's job factory).
        """
        if problem := refusal(cost or estimate_training_cost(config, N_MNIST_TRAIN)):
            raise RunRefused(f"This server cannot run that: {problem}.")
        with self._lock:
            self._restore(user)
            mine = [r for r in self._runs.values() if r.user == user]
            if sum(not _finished(r) for r in mine) >= self.max_active_per_user:
                raise RunRefused(
                    "You already have a run training or waiting: stop it, or wait for it to finish, "
                    "before starting another."
                )
            if self._running_count() >= self.max_running and len(self._queue) >= self.max_waiting:
                raise RunRefused(
                    f"The server is busy: {self._running_count()} networks are training and "
                    f"{len(self._queue)} more are waiting. Try again when one has finished."
                )
            self._make_room(user)
            account = self._user(user)
            account.started += 1
            run_id = secrets.token_urlsafe(12)
            if self._store is not None:
                job_options["keep_if_orphaned"] = {
                    "store": self._store.settings(), "user": user, "run_id": run_id,
                    "facts": {
                        "number": account.started, "name": None, "kind": kind, "based_on": based_on,
                        "based_on_id": based_on_id, "created": time.time(),
                    },
                }  # fmt: skip
            job = (factory or self._job_factory)(
                config, mnist_dir, save_dir=None, source=source, on_finish=self._job_finished, **job_options
            )
            self._runs[run_id] = _Run(run_id, user, account.started, job, None, kind, based_on, based_on_id)
            self._queue.append(run_id)
            self._schedule()
        return run_id

    def stop(self, user: str, run_id: str) -> bool:
        """Ask ``user``'s run to stop after its current batch (a waiting run is cancelled). False if not theirs."""
        with self._lock:
            run = self._owned(user, run_id)
        if run is None:
            return False
        run.job.stop()  # outside the lock: cancelling a waiting job calls back into the registry
        return True

    def pause(self, user: str, run_id: str) -> bool:
        """Pause ``user``'s training run after its current batch. False if not theirs or not training."""
        with self._lock:
            run = self._owned(user, run_id)
        return run is not None and run.job.pause()

    def resume(self, user: str, run_id: str) -> bool:
        """Carry on with ``user``'s paused run. False if not theirs or not paused."""
        with self._lock:
            run = self._owned(user, run_id)
        return run is not None and run.job.resume()

    def stop_all(self, user: str | None = None, timeout: float = 60, note: str | None = None) -> None:
        """Stop every unfinished run (of ``user``, or all) and wait up to ``timeout`` s in all for them to end.

        A stopped run still ends with its model (kept in the store, if there is one); ``note``
        says why it was stopped. Queued runs are cancelled.
        """
        with self._lock:
            runs = [r for r in self._runs.values() if (user is None or r.user == user) and not _finished(r)]
        for run in runs:
            run.job.stop(note)
        deadline = time.monotonic() + timeout
        for run in runs:
            run.job.join(max(0.0, deadline - time.monotonic()))

    def stop_for_shutdown(self, timeout: float = SHUTDOWN_WAIT_S) -> int:
        """The process is exiting: stop the runs still training so their models are kept; how many."""
        with self._lock:
            training = sum(not _finished(r) and r.job.status != QUEUED for r in self._runs.values())
        if training:
            print(
                f"mnist_net: stopping {training} training run(s) so their models are kept (at most {timeout:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        self.stop_all(timeout=timeout, note=SHUTDOWN_NOTE)
        return training

    # --- what a user sees ------------------------------------------------------------------
    def runs(self, user: str) -> list[RunView]:
        """``user``'s runs, newest first (an unknown or malformed id has none)."""
        if not valid_user_id(user):
            return []
        with self._lock:
            self._restore(user)
            self._schedule()
            if user in self._users:
                self._users.move_to_end(user)
            return [self._view(r) for r in reversed(self._runs.values()) if r.user == user]

    def get(self, user: str, run_id: str) -> RunView | None:
        with self._lock:
            run = self._owned(user, run_id)
            return None if run is None else self._view(run)

    def job(self, user: str, run_id: str) -> TrainingJob | None:
        """The job behind ``user``'s run (its model, its bytes), or None."""
        with self._lock:
            run = self._owned(user, run_id)
            return None if run is None else run.job

    def model(self, user: str, run_id: str) -> MLP | None:
        job = self.job(user, run_id)
        return None if job is None else job.model

    def active(self, user: str) -> list[RunView]:
        """``user``'s unfinished runs (training, evaluating, starting or waiting)."""
        return [v for v in self.runs(user) if v.snapshot.running]

    def running_count(self) -> int:
        with self._lock:
            return self._running_count()

    # --- settings that survive a reload -----------------------------------------------------
    def settings(self, user: str) -> dict[str, Any]:
        """The train form's values ``user`` last submitted (empty if none)."""
        if not valid_user_id(user):
            return {}
        with self._lock:
            account = self._users.get(user)
            return {} if account is None else dict(account.settings)

    def remember_settings(self, user: str, values: dict[str, Any]) -> None:
        """Keep the train form's values for ``user`` (plain, small values only)."""
        _check_user(user)
        plain = {str(k)[:64]: v for k, v in list(values.items())[:32] if isinstance(v, (bool, int, float, str))}
        plain = {k: v[:200] if isinstance(v, str) else v for k, v in plain.items()}
        with self._lock:
            self._user(user).settings = plain

    # --- keeping, renaming, deleting, forgetting ---------------------------------------------
    def keep(self, user: str, run_id: str, name: str, directory: str | os.PathLike | None = None) -> Path:
        """Save the run's model into the models folder (default ``registry.models_dir()``) as ``name``.

        The file name is ``model_filename``'s (time, accuracy) plus the name's slug; no file is
        ever overwritten. RunRefused if the run is not ``user``'s, has no model or is kept already.
        """
        run = self._owned_or_refuse(user, run_id)
        with run.files_lock:
            if run.kept_path is not None:
                raise RunRefused(f"This run is kept already, as {run.kept_path.name}.")
            job = run.job
            if job.model is None or job.model_bytes is None:
                raise RunRefused("This run has no trained model to keep.")
            folder = Path(directory) if directory is not None else models_dir()
            accuracy = job.model.metrics_.get("test_accuracy")
            names = kept_file_names(datetime.now(UTC), accuracy, name)
            try:
                path = write_new(folder, names, job.model_bytes)
            except OSError as e:
                problem = e.strerror or e
                raise RunRefused(f"The model could not be saved: {problem}. It is still here in the run.") from None
            run.kept_path, run.kept_version = path, file_version(os.stat(path, follow_symlinks=False))
            run.name = _clean_name(name)
            self._relabel_continuations(run)
            self._persist(run)
            return path

    def rename(self, user: str, run_id: str, name: str) -> Path | None:
        """Give the run a new name; a kept run's file is renamed to match (never over another file)."""
        run = self._owned_or_refuse(user, run_id)
        with run.files_lock:
            new_name = _clean_name(name)
            if run.kept_path is None:
                run.name = new_name
                self._relabel_continuations(run)
                self._persist(run)
                return None
            old = self._checked_own_file(run)
            stamp = _KEPT_STEM_RE.match(old.name)
            base = stamp.group(0) if stamp else old.stem
            slug = name_slug(name)
            stem = f"{base}-{slug}" if slug else base
            candidates = [f"{stem}{SUFFIX}", *(f"{stem}-{i}{SUFFIX}" for i in range(2, 1000))]
            for candidate in candidates:
                target = old.with_name(candidate)
                if target == old:
                    break
                try:
                    _move_without_overwriting(old, target)
                except FileExistsError:
                    continue
                except OSError as e:
                    raise RunRefused(f"The file could not be renamed: {e.strerror or e}.") from None
                run.kept_path, run.kept_version = target, file_version(os.stat(target, follow_symlinks=False))
                break
            run.name = new_name
            self._relabel_continuations(run)
            self._persist(run)
            return run.kept_path

    def delete_kept(self, user: str, run_id: str) -> None:
        """Delete the file ``keep`` wrote for this run (the model stays in the run, unkept)."""
        run = self._owned_or_refuse(user, run_id)
        with run.files_lock:
            if run.kept_path is None:
                return
            path = self._checked_own_file(run)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RunRefused(f"The file could not be deleted: {e.strerror or e}.") from None
            fsync_directory(path.parent)
            run.kept_path, run.kept_version = None, ()
            self._persist(run)

    def forget(self, user: str, run_id: str) -> None:
        """Take a finished run off ``user``'s list (a kept file stays in the models folder)."""
        with self._lock:
            run = self._owned(user, run_id)
            if run is None:
                return
            if not _finished(run):
                raise RunRefused("Stop this run before removing it from the list.")
            self._drop(run)

    # --- internals -------------------------------------------------------------------------
    def _owned(self, user: str, run_id: str) -> _Run | None:
        if valid_user_id(user):
            self._restore(user)
        run = self._runs.get(run_id) if isinstance(run_id, str) else None
        if run is None or not valid_user_id(user) or not secrets.compare_digest(run.user, user):
            return None
        return run

    def _owned_or_refuse(self, user: str, run_id: str) -> _Run:
        with self._lock:
            run = self._owned(user, run_id)
        if run is None:
            raise RunRefused("There is no such run in your list (it may have been removed).")
        return run

    def _checked_own_file(self, run: _Run) -> Path:
        """The run's kept file, if it is still exactly the file this registry wrote; RunRefused if not."""
        path = run.kept_path
        assert path is not None
        if not _KEPT_NAME_RE.match(path.name) or path.is_symlink():
            raise RunRefused("That file was not saved by this app, so it is left alone.")
        try:
            version = file_version(os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            run.kept_path, run.kept_version = None, ()
            raise RunRefused("The saved file is gone already (someone removed it from the models folder).") from None
        if version != run.kept_version:
            raise RunRefused("The saved file was changed since this app saved it, so it is left alone.")
        return path

    def _user(self, user: str) -> _User:
        account = self._users.get(user)
        if account is None:
            account = self._users[user] = _User()
            # Bounded: forget the least recently seen users that have no runs left.
            with_runs = {r.user for r in self._runs.values()}
            idle = [u for u in self._users if u not in with_runs and u != user]
            for old in idle[: len(self._users) - self.max_users]:
                del self._users[old]
        self._users.move_to_end(user)
        return account

    def _running_count(self) -> int:
        return sum(1 for r in self._runs.values() if r.job.status not in (QUEUED, *FINISHED))

    def _schedule(self) -> None:
        """Start waiting runs while slots are free (first come, first served); drop cancelled ones."""
        with self._lock:
            self._queue = deque(i for i in self._queue if i in self._runs and not _finished(self._runs[i]))
            while self._queue and self._running_count() < self.max_running:
                self._runs[self._queue.popleft()].job.start()

    def _job_finished(self, job: TrainingJob) -> None:
        """Called by a job's reader thread when it ends: free its slot, bound the memory of models."""
        with self._lock:
            self._schedule()
            finished = [r for r in self._runs.values() if _finished(r) and r.job.model_bytes]
            total = sum(2 * len(r.job.model_bytes or b"") for r in finished)  # the bytes and the arrays
            for run in finished:  # oldest first; never the model that just arrived
                if total <= self.max_model_bytes:
                    break
                if run.job is not job:
                    total -= 2 * len(run.job.model_bytes or b"")
                    self._drop(run)
            ended = next((r for r in self._runs.values() if r.job is job), None)
        if ended is not None and self._store is not None and job.model_bytes:
            with ended.files_lock:
                self._persist(ended)

    def _make_room(self, user: str) -> None:
        """Drop the oldest finished runs so one more fits the per-user and the total bounds."""
        mine = [r for r in self._runs.values() if r.user == user]
        droppable = [r for r in mine if _finished(r)]
        while len(mine) >= self.max_runs_per_user and droppable:
            oldest = droppable.pop(0)
            mine.remove(oldest)
            self._drop(oldest)
        finished = [r for r in self._runs.values() if _finished(r)]
        while len(self._runs) >= self.max_runs and finished:
            self._drop(finished.pop(0))
        if len(self._runs) >= self.max_runs:
            raise RunRefused("The server is busy: too many runs are going. Try again when one has finished.")

    def _drop(self, run: _Run) -> None:
        """Take a run off the lists, in memory and in the store."""
        self._runs.pop(run.id, None)
        if self._store is not None:
            self._store.delete(run.user, run.id)

    def _persist(self, run: _Run) -> None:
        """Write a finished run with a model to the store (called with ``run.files_lock`` held)."""
        job = run.job
        snap = job.snapshot()
        if (
            self._store is None
            or job.model_bytes is None
            or snap.status not in RUN_STATUSES
            or run.id not in self._runs
        ):
            return
        facts = {
            "number": run.number, "name": run.name, "kind": run.kind, "based_on": run.based_on,
            "based_on_id": run.based_on_id, "status": snap.status, "note": snap.note, "created": snap.created,
            "started": snap.started, "finished_at": snap.finished_at, "tuning": snap.tuning,
            "kept": None if run.kept_path is None else {"name": run.kept_path.name, "version": list(run.kept_version)},
        }  # fmt: skip
        data = run_file_bytes(facts, job.model_bytes, snap.evaluation, snap.mistake_images, snap.mistake_labels)
        try:
            self._store.save(run.user, run.id, data)
        except OSError:
            pass  # a full or read-only scratch folder: the run lives on in memory, as before the store

    def _restore(self, user: str) -> None:
        """Read ``user``'s stored runs back (after a restart), oldest first; called with the lock held.

        Read again whenever the user's folder has changed since: a training process whose server
        was killed writes its run there itself, possibly after the new server first read it.
        """
        if self._store is None:
            return
        version = self._store.version(user)
        if user in self._restored and self._restored[user] == version:
            return
        self._restored[user] = version
        try:
            stored = self._store.load(user)
        except OSError:
            return
        account = self._user(user)
        for s in stored:
            if s.run_id in self._runs:
                continue
            f = s.facts
            job = RestoredJob(s.model.config, "", source=str(s.model.info_.get("source", "train page")), stored=s)
            run = _Run(s.run_id, user, f["number"], job, f["name"], f["kind"], f["based_on"], f["based_on_id"])
            kept = f["kept"]
            if kept is not None:  # still the very file this registry wrote? Then it can be renamed or deleted
                path = models_dir() / kept["name"]
                try:
                    same = file_version(os.stat(path, follow_symlinks=False)) == tuple(kept["version"])
                except OSError:
                    same = False
                if same:
                    run.kept_path, run.kept_version = path, tuple(kept["version"])
            self._runs[s.run_id] = run
            account.started = max(account.started, f["number"])

    def _view(self, run: _Run) -> RunView:
        snap = run.job.snapshot()
        position = None
        if snap.status == QUEUED and run.id in self._queue:
            position = self._queue.index(run.id)
        return RunView(
            run.id,
            run.number,
            run.name,
            run.job.config,
            snap,
            run.kept_path,
            position,
            len(run.job.model_bytes or b""),
            run.kind,
            run.based_on,
            run.based_on_id,
        )

    def _relabel_continuations(self, base: _Run) -> None:
        """Runs that continue ``base`` name it by its new name (kept even once ``base`` is gone)."""
        with self._lock:
            continuations = [r for r in self._runs.values() if r.based_on_id == base.id]
        for run in continuations:
            run.based_on = base.name or f"Run {base.number}"
            if _finished(run):
                with run.files_lock:
                    self._persist(run)


_KEPT_STEM_RE = re.compile(r"^mnist-\d{8}-\d{6}(?:-acc\d+\.\d\d)?")


def _finished(run: _Run) -> bool:
    return run.job.status in FINISHED


def _check_user(user: str) -> None:
    if not valid_user_id(user):
        raise ValueError("not a user id from new_user_id()")


def _clean_name(name: str) -> str | None:
    """The name as shown: printable characters only, at most MAX_NAME of them; None if empty."""
    text = "".join(c for c in unicodedata.normalize("NFC", str(name)) if c.isprintable()).strip()[:MAX_NAME]
    return text or None


def _move_without_overwriting(old: Path, new: Path) -> None:
    """Rename ``old`` to ``new``; FileExistsError if ``new`` exists (a hard link refuses to replace)."""
    try:
        os.link(old, new)
    except FileExistsError:
        raise
    except OSError:  # no hard links here: check, then rename (the folder is only ours to write)
        if os.path.lexists(new):
            raise FileExistsError(new) from None
        os.rename(old, new)
    else:
        os.unlink(old)
    fsync_directory(new.parent)
