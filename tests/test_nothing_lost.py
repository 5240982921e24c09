"""Nothing is lost: kills, full disks, stopped runs, parallel runs and corrupt MNIST files.

Kills are real: a child process saving a model is SIGKILLed mid-write or just before the
rename. The full disk is simulated twice: a write raising ENOSPC, and a real kernel
refusal (EFBIG) under a file-size limit in a child. Throughout, an existing model file
must stay byte-identical and loadable, no partial file may appear under a final name,
and no temp file may stay behind (one left by a killed process goes at the next save).
"""

from __future__ import annotations

import errno
import functools
import gzip
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mnist_net import MLP, MnistError, TrainConfig, files, load_mnist, load_model, model_io, save_model
from mnist_net import data as mnist_data
from mnist_net.jobs import DONE, STOPPED, TrainingJob
from mnist_net.registry import list_models, save_new_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMP_FILE = re.compile(r"^\..*\.tmp$")


def probe(mnist) -> np.ndarray:
    return mnist.X_test[:200]


def assert_same_model(a, b, mnist) -> None:
    np.testing.assert_array_equal(a.predict_proba(probe(mnist)), b.predict_proba(probe(mnist)))


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def age(path: Path, seconds: float) -> None:
    """Pretend ``path`` was last written ``seconds`` ago."""
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture(scope="module")
def other_model(mnist):
    """A second real model, different from ``small_model``, to save over it."""
    m = MLP(hidden_sizes=(32,), activation="relu", epochs=1, n_train=2000, seed=9, batch_size=64)
    return m.fit(mnist.X_train, mnist.y_train)


# --- a process killed while saving ------------------------------------------------------------

CHILD_SAVE = textwrap.dedent("""
    import os, signal, sys, time
    from mnist_net import files, load_model, model_io, registry

    source, target, mode = sys.argv[1:4]
    model = load_model(source)
    real_fdopen = os.fdopen

    class SlowFile:
        # Writes 4 KiB at a time so the parent can kill us with the file half written.
        def __init__(self, f):
            self.f = f
        def write(self, data):
            for i in range(0, len(data), 4096):
                self.f.write(data[i:i + 4096])
                self.f.flush()
                time.sleep(0.02)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    if mode in ("slow", "registry"):
        files.os.fdopen = lambda fd, *a, **k: SlowFile(real_fdopen(fd, *a, **k))
    elif mode == "before-rename":
        files.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    print("saving", flush=True)
    if mode == "registry":
        registry.save_new_model(model, target)
    else:
        model_io.save_model(model, target)
    print("saved", flush=True)
""")


def run_child(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_SAVE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_when_half_written(child: subprocess.Popen, folder: Path, total: int) -> None:
    """SIGKILL the child once its temp file holds some but not all of the model's bytes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [p for p in folder.iterdir() if TEMP_FILE.match(p.name)]
        if temps and 0 < temps[0].stat().st_size < total:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            return
        if child.poll() is not None:
            break
        time.sleep(0.005)
    child.kill()
    pytest.fail(f"never saw a half-written temp file; child said {child.communicate()}")


def test_kill_mid_write_keeps_the_existing_file(small_model, other_model, mnist, tmp_path):
    source = save_model(other_model, tmp_path / "source" / "other.pkl")
    folder = tmp_path / "models"
    target = save_model(small_model, folder / "model.pkl")
    before = target.read_bytes()

    child = run_child(str(source), str(target), "slow")
    kill_when_half_written(child, folder, len(source.read_bytes()))

    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == before  # the old model, byte for byte
    assert_same_model(load_model(target), small_model, mnist)
    [leftover] = [n for n in files_in(folder) if n != "model.pkl"]
    assert TEMP_FILE.match(leftover)  # hidden and named .tmp: never mistaken for a model
    assert [m.name for m in list_models(folder)] == ["model.pkl"]

    # The dead writer's temp file is removed by the next save into the folder.
    age(folder / leftover, files.STALE_TEMP_SECONDS + 1)
    save_model(other_model, folder / "next.pkl")
    assert files_in(folder) == ["model.pkl", "next.pkl"]


def test_kill_just_before_the_rename_keeps_the_existing_file(small_model, other_model, mnist, tmp_path):
    source = save_model(other_model, tmp_path / "other.pkl")
    folder = tmp_path / "models"
    target = save_model(small_model, folder / "model.pkl")
    before = target.read_bytes()

    child = run_child(str(source), str(target), "before-rename")
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert "saving" in out and "saved" not in out
    assert target.read_bytes() == before
    [leftover] = [n for n in files_in(folder) if n != "model.pkl"]
    age(folder / leftover, files.STALE_TEMP_SECONDS + 1)
    assert files.remove_stale_temp_files(folder) == [folder / leftover]
    assert files_in(folder) == ["model.pkl"]


def test_kill_while_saving_a_new_model_leaves_no_file_under_its_name(other_model, tmp_path):
    source = save_model(other_model, tmp_path / "other.pkl")
    folder = tmp_path / "models"
    folder.mkdir()
    child = run_child(str(source), str(folder / "new.pkl"), "slow")
    kill_when_half_written(child, folder, len(source.read_bytes()))
    assert not (folder / "new.pkl").exists()
    assert all(TEMP_FILE.match(n) for n in files_in(folder))


def test_kill_during_a_models_folder_save_loses_nothing(small_model, other_model, tmp_path):
    """The app's own save (registry.save_new_model), killed half way through writing."""
    source = save_model(other_model, tmp_path / "other.pkl")
    folder = tmp_path / "models"
    kept = save_new_model(small_model, folder)
    before = kept.read_bytes()
    child = run_child(str(source), str(folder), "registry")
    kill_when_half_written(child, folder, len(source.read_bytes()))
    assert [m.path for m in list_models(folder)] == [kept] and kept.read_bytes() == before
    for name in files_in(folder):
        if name != kept.name:
            age(folder / name, files.STALE_TEMP_SECONDS + 1)
    second = save_new_model(other_model, folder)
    assert files_in(folder) == sorted([kept.name, second.name])


def test_a_live_writers_temp_file_is_never_removed(tmp_path, other_model):
    """Stale means: writer dead AND untouched for a while. Ours (alive) and fresh ones stay."""
    folder = tmp_path / "models"
    folder.mkdir()
    mine = folder / f".m.pkl.{os.getpid()}-abc123.tmp"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = folder / f".m.pkl.{sleeper.pid}-abc123.tmp"
        dead_but_fresh = folder / ".m.pkl.999999999-abc123.tmp"
        for p in (mine, alive, dead_but_fresh):
            p.write_bytes(b"partial")
        age(mine, 3600)
        age(alive, 3600)
        save_model(other_model, folder / "m.pkl")
        assert mine.exists() and alive.exists() and dead_but_fresh.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


# --- a full disk ------------------------------------------------------------------------------


def fill_disk_after(monkeypatch, n_bytes: int) -> None:
    """Make writes of model files fail with ENOSPC once ``n_bytes`` have been written."""
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            room = max(0, n_bytes - self.written)
            self.f.write(data[:room])
            self.written += min(room, len(data))
            if len(data) > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(files.os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))


def test_full_disk_on_save_keeps_the_existing_file(small_model, other_model, mnist, tmp_path, monkeypatch):
    target = save_model(small_model, tmp_path / "model.pkl")
    before = target.read_bytes()
    fill_disk_after(monkeypatch, 10_000)
    with pytest.raises(OSError) as info:
        save_model(other_model, target)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert str(target) in message and "No space left on device" in message and "unchanged" in message
    assert target.read_bytes() == before
    assert files_in(tmp_path) == ["model.pkl"]  # the partial temp file is gone
    assert_same_model(load_model(target), small_model, mnist)


def test_full_disk_during_a_training_job_keeps_the_model_and_the_folder(mnist, small_model, tmp_path, monkeypatch):
    """The train page's job: the save fails, the job says why, the trained model stays in memory."""
    folder = tmp_path / "models"
    kept = save_new_model(small_model, folder)
    fill_disk_after(monkeypatch, 5_000)
    config = TrainConfig(hidden_sizes=(16,), activation="relu", epochs=1, n_train=1000, batch_size=50)
    job = TrainingJob(config, mnist, save_dir=folder).start()
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == DONE and snap.saved_path is None
    assert "No space left on device" in snap.save_error
    assert job.model is not None and job.model.predict_proba(probe(mnist)).shape == (200, 10)
    assert files_in(folder) == [kept.name] and load_model(kept) is not None


CHILD_FILE_SIZE_LIMIT = textwrap.dedent("""
    import json, resource, signal, sys
    from mnist_net import load_model, save_model

    model = load_model(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    try:
        save_model(model, sys.argv[2])
        print(json.dumps({"saved": True}))
    except OSError as e:
        print(json.dumps({"saved": False, "errno": e.errno, "message": str(e)}))
""")


def test_a_real_write_refused_by_the_kernel_keeps_the_existing_file(small_model, other_model, tmp_path):
    """No monkeypatching: the kernel refuses the write (file size limit), as a full disk would."""
    source = save_model(other_model, tmp_path / "source" / "other.pkl")
    folder = tmp_path / "models"
    target = save_model(small_model, folder / "model.pkl")
    before = target.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    limit = len(source.read_bytes()) // 3
    done = subprocess.run(
        [sys.executable, "-c", CHILD_FILE_SIZE_LIMIT, str(source), str(target), str(limit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["saved"] is False and result["errno"] == errno.EFBIG, done.stderr
    assert str(target) in result["message"]
    assert target.read_bytes() == before
    assert files_in(folder) == ["model.pkl"]


# --- stopping a training mid-epoch ------------------------------------------------------------


def stop_after(n_checks: int):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= n_checks

    return stop


def test_stopping_mid_epoch_ends_at_the_next_batch_and_the_model_is_kept(mnist, tmp_path):
    config = TrainConfig(
        hidden_sizes=(32,), activation="relu", epochs=2, n_train=3000, batch_size=50, seed=4, log_every=5
    )
    model = MLP(config)
    records = list(model.iter_fit(mnist.X_train, mnist.y_train, stop=stop_after(7)))
    last = records[-1]
    assert last.stopped and last.kind == "batch" and (last.epoch, last.batch) == (1, 7)
    assert sum(r.stopped for r in records) == 1 and last.batch < last.batches_per_epoch
    assert model.epochs_done_ == 0 and int(model.optimizer_state_["t"]) == 7
    p = model.predict_proba(probe(mnist))
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1, atol=1e-5)

    existing = save_model(model, tmp_path / "stopped.pkl")
    loaded = load_model(existing)
    assert_same_model(loaded, model, mnist)
    assert loaded.history_[-1]["stopped"] and int(loaded.optimizer_state_["t"]) == 7

    # Resume from the file: the run carries on from batch 8's weights and optimizer state.
    resumed = list(loaded.iter_fit(mnist.X_train, mnist.y_train))
    assert not any(r.stopped for r in resumed) and loaded.epochs_done_ == 2
    assert int(loaded.optimizer_state_["t"]) == 7 + 2 * last.batches_per_epoch
    assert len(loaded.history_) == len(model.history_) + len(resumed)
    assert loaded.score(mnist.X_test[:1000], mnist.y_test[:1000]) > 0.8
    assert load_model(existing).epochs_done_ == 0  # the stopped file is untouched by resuming


def test_stop_requested_before_the_first_batch_still_gives_a_valid_model(mnist, tmp_path):
    model = MLP(hidden_sizes=(16,), activation="sigmoid", epochs=3, n_train=1000, batch_size=100)
    records = list(model.iter_fit(mnist.X_train, mnist.y_train, stop=lambda: True))
    assert len(records) == 1 and records[0].stopped and records[0].batch == 1
    assert_same_model(load_model(save_model(model, tmp_path / "m.pkl")), model, mnist)


def test_stopping_a_training_job_saves_the_model_so_far(mnist, tmp_path):
    """The train page's Stop button: the job ends at the next batch, then evaluates and saves."""
    folder = tmp_path / "models"
    config = TrainConfig(hidden_sizes=(32,), activation="relu", epochs=50, n_train=5000, batch_size=50, log_every=1)
    job = TrainingJob(config, mnist, save_dir=folder).start()
    deadline = time.monotonic() + 120
    while not job.snapshot().history and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.join(timeout=300)
    snap = job.snapshot()
    assert snap.status == STOPPED and snap.history[-1]["stopped"]
    assert snap.history[-1]["epoch"] == 1  # long before the 50 epochs it was asked for
    saved = load_model(snap.saved_path)
    assert saved.info_["stopped_early"] is True
    assert_same_model(saved, job.model, mnist)


# --- two trainings at once -----------------------------------------------------------------------


def test_two_training_jobs_at_once_both_finish_and_save_distinct_files(mnist, tmp_path):
    folder = tmp_path / "models"
    configs = [
        TrainConfig(hidden_sizes=(24,), activation="relu", epochs=1, n_train=3000, batch_size=50, seed=seed)
        for seed in (1, 2)
    ]
    jobs = [TrainingJob(c, mnist, save_dir=folder) for c in configs]
    for job in jobs:
        job.start()
    for job in jobs:
        assert job.join(timeout=600)
    snaps = [job.snapshot() for job in jobs]
    assert [s.status for s in snaps] == [DONE, DONE], [s.error for s in snaps]
    paths = [s.saved_path for s in snaps]
    assert paths[0] != paths[1]
    assert sorted(m.path for m in list_models(folder)) == sorted(paths)
    assert files_in(folder) == sorted(p.name for p in paths)
    for job, path in zip(jobs, paths):
        assert_same_model(load_model(path), job.model, mnist)
    assert not np.array_equal(jobs[0].model.params_["W1"], jobs[1].model.params_["W1"])


def test_two_threads_training_and_saving_in_the_same_second(mnist, tmp_path):
    """Same timestamp, same accuracy-free name: the models folder still gives each its own file."""
    folder = tmp_path / "models"
    when = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    barrier = threading.Barrier(2)
    results: dict[int, tuple] = {}

    def train_and_save(seed: int) -> None:
        model = MLP(hidden_sizes=(16,), activation="relu", epochs=1, n_train=2000, batch_size=50, seed=seed)
        model.fit(mnist.X_train, mnist.y_train)
        barrier.wait()  # save at the same moment
        results[seed] = (model, save_new_model(model, folder, when=when))

    threads = [threading.Thread(target=train_and_save, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert set(results) == {1, 2}
    (m1, p1), (m2, p2) = results[1], results[2]
    assert p1 != p2 and {p1.name, p2.name} == {"mnist-20261128-120000.pkl", "mnist-20261128-120000-2.pkl"}
    assert_same_model(load_model(p1), m1, mnist)
    assert_same_model(load_model(p2), m2, mnist)
    assert files_in(folder) == sorted([p1.name, p2.name])


def test_concurrent_saves_to_one_path_never_mix_files(small_model, other_model, tmp_path):
    """Last writer wins, whole: the file is always exactly one of the two models' bytes."""
    target = tmp_path / "shared.pkl"
    versions = {model_io.model_to_bytes(small_model), model_io.model_to_bytes(other_model)}
    errors = []

    def save_many(model) -> None:
        try:
            for _ in range(15):
                save_model(model, target)
        except Exception as e:  # reported below; a thread's exception would otherwise vanish
            errors.append(e)

    threads = [threading.Thread(target=save_many, args=(m,)) for m in (small_model, other_model)]
    for t in threads:
        t.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        if target.exists():
            seen.add(target.read_bytes() in versions)
    for t in threads:
        t.join()
    assert not errors and seen <= {True}
    assert target.read_bytes() in versions and files_in(tmp_path) == ["shared.pkl"]


# --- a corrupted MNIST file ---------------------------------------------------------------------

CORRUPTED = "t10k-labels-idx1-ubyte.gz"


def relabelled(real: Path) -> bytes:
    """The real file with one label changed: still a perfectly valid IDX file; only the hash can tell."""
    raw = bytearray(gzip.decompress(real.read_bytes()))
    raw[8] = (raw[8] + 1) % 10
    return gzip.compress(bytes(raw))


def corruptions(real: Path) -> dict[str, bytes]:
    good = real.read_bytes()
    return {
        "relabelled": relabelled(real),
        "truncated": good[: len(good) // 2],
        "garbage": np.random.default_rng(0).bytes(len(good)),
    }


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A download mirror on 127.0.0.1 serving a folder; MIRRORS points only at it."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(mnist_data, "MIRRORS", (f"http://127.0.0.1:{server.server_port}/",))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield root
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def corrupt_cache(tmp_path, monkeypatch, mnist_dir):
    """A per-user cache (XDG_CACHE_HOME) holding the real files, with MNIST_DIR unset."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MNIST_DIR", raising=False)
    cache = mnist_data.cache_dir()
    cache.mkdir(parents=True)
    for name in mnist_data.FILES:
        (cache / name).symlink_to(mnist_dir / name)
    return cache


def plant(folder: Path, content: bytes) -> Path:
    path = folder / CORRUPTED
    path.unlink(missing_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["relabelled", "truncated", "garbage"])
def test_corrupt_cache_file_is_reported_when_it_cannot_be_replaced(kind, corrupt_cache, mnist_dir):
    path = plant(corrupt_cache, corruptions(mnist_dir / CORRUPTED)[kind])
    with pytest.raises(MnistError) as info:
        load_mnist(download=False, progress=False)
    assert str(path) in str(info.value)
    assert ("hash does not match" if kind == "relabelled" else "cannot decompress") in str(info.value)


@pytest.mark.parametrize("kind", ["relabelled", "truncated", "garbage"])
def test_corrupt_cache_file_is_replaced_by_a_verified_download(kind, corrupt_cache, mirror, mnist_dir, mnist):
    plant(corrupt_cache, corruptions(mnist_dir / CORRUPTED)[kind])
    shutil.copy(mnist_dir / CORRUPTED, mirror / CORRUPTED)
    data = load_mnist(download=True, progress=False)
    np.testing.assert_array_equal(data.y_test, mnist.y_test)  # the real labels, not the planted ones
    assert gzip.decompress((corrupt_cache / CORRUPTED).read_bytes()) == gzip.decompress(
        (mnist_dir / CORRUPTED).read_bytes()
    )
    assert files_in(corrupt_cache) == sorted(mnist_data.FILES)  # no .part files


def test_corrupt_cache_file_with_a_corrupt_mirror_is_deleted_and_reported(corrupt_cache, mirror, mnist_dir):
    bad = relabelled(mnist_dir / CORRUPTED)
    plant(corrupt_cache, bad)
    (mirror / CORRUPTED).write_bytes(bad)  # the mirror serves the same wrong content
    with pytest.raises(
        MnistError,
        match=re.escape(CORRUPTED) + r" was corrupt .* has been deleted; "
        r"a fresh copy could not be downloaded.*content hash mismatch",
    ):
        load_mnist(download=True, progress=False)
    assert not (corrupt_cache / CORRUPTED).exists()  # a file known to be bad never stays in the cache
    assert files_in(corrupt_cache) == sorted(n for n in mnist_data.FILES if n != CORRUPTED)


def test_corrupt_cache_file_with_no_network_is_deleted_and_reported(corrupt_cache, mirror, mnist_dir):
    plant(corrupt_cache, relabelled(mnist_dir / CORRUPTED))  # the mirror folder is empty: 404
    with pytest.raises(
        MnistError,
        match=re.escape(CORRUPTED) + r" was corrupt .* could not be downloaded"
        r".*HTTP Error 404",
    ):
        load_mnist(download=True, progress=False)
    assert not (corrupt_cache / CORRUPTED).exists()


@pytest.mark.parametrize("via", ["MNIST_DIR", "data_dir"])
@pytest.mark.parametrize("kind", ["relabelled", "truncated"])
def test_corrupt_file_in_an_explicit_folder_is_reported_by_name_and_left_alone(
    via, kind, tmp_path, monkeypatch, mnist_dir
):
    folder = tmp_path / "my-mnist"
    folder.mkdir()
    for name in mnist_data.FILES:
        (folder / name).symlink_to(mnist_dir / name)
    bad = corruptions(mnist_dir / CORRUPTED)[kind]
    path = plant(folder, bad)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MNIST_DIR", str(folder))
    with pytest.raises(MnistError) as info:
        load_mnist(folder if via == "data_dir" else None, download=True, progress=False)
    assert str(path) in str(info.value)
    assert path.read_bytes() == bad  # the user's own folder: reported, never deleted or replaced
    assert not (tmp_path / "cache").exists()  # and nothing silently used from elsewhere
