"""Hostile MNIST files (issue 13, item 8): a gzip bomb, wherever it comes from, is refused by name in bounded memory.

The bombs are built here: gzip members of 1 MiB of zeros (about 1 KB each) concatenated, a valid gzip file that
decompresses to hundreds of MB. Loading runs in a child process with a memory cap (tests/bounded.py): the old code
decompressed whole files before checking them, so there it ran out of memory (a raw MemoryError) or, with memory to
spare, reported only a hash mismatch after unpacking everything.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil

import pytest
from bounded import run_bounded
from conftest import MNIST_DIR

from mnist_net import data as data_mod
from mnist_net.data import FILES, MnistError, load_mnist

BOMB_MB = 512  # decompressed size of the bombs; each .gz is ~0.5 MB, under any real file's compressed size cap
BUDGET_MB = 200  # memory the child may add: real MNIST takes ~55 MB to load now (~110 MB before)
DEADLINE = 60.0  # seconds

needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(), reason=f"needs the MNIST files in {MNIST_DIR}"
)


def gzip_bomb(megabytes: int = BOMB_MB) -> bytes:
    """A valid multi-member gzip of ``megabytes`` MiB of zeros, about 1 KB per MiB."""
    return gzip.compress(bytes(1 << 20), mtime=0) * megabytes


def folder_with(folder, bad_name: str, content: bytes):
    """A folder of the real MNIST files (symlinked) with ``bad_name`` replaced by ``content``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name == bad_name:
            (folder / name).write_bytes(content)
        else:
            (folder / name).symlink_to(MNIST_DIR / name)
    return folder


class FakeResponse(io.BytesIO):
    """What urllib.request.urlopen returns, serving fixed bytes."""

    headers: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def isolate_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return data_mod.cache_dir()


def load_explicit(folder):
    return load_mnist(folder, download=False, progress=False)


def load_default():
    return load_mnist(download=True, progress=False)


@needs_mnist
@pytest.mark.parametrize("bad_name", list(FILES))
def test_gzip_bomb_in_an_explicit_folder_is_refused_by_name_in_bounded_memory(bad_name, tmp_path):
    folder = folder_with(tmp_path / "my-mnist", bad_name, gzip_bomb())
    outcome = run_bounded(load_explicit, folder, seconds=DEADLINE, memory_mb=BUDGET_MB)
    assert outcome.kind == "raised" and outcome.error_type == "MnistError", outcome
    assert str(folder / bad_name) in outcome.message and "larger than the official MNIST file" in outcome.message
    assert (folder / bad_name).stat().st_size > 0  # the user's own folder: reported, never deleted


@needs_mnist
def test_single_member_gzip_bomb_is_refused_in_bounded_memory(tmp_path):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as out:
        for _ in range(200):  # 200 MiB of zeros in one gzip member (~200 KB)
            out.write(bytes(1 << 20))
    folder = folder_with(tmp_path / "my-mnist", "t10k-images-idx3-ubyte.gz", buf.getvalue())
    outcome = run_bounded(load_explicit, folder, seconds=DEADLINE, memory_mb=BUDGET_MB)
    assert outcome.kind == "raised" and outcome.error_type == "MnistError", outcome
    assert "t10k-images-idx3-ubyte.gz: larger than the official MNIST file" in outcome.message


@needs_mnist
def test_gzip_bomb_in_the_cache_is_deleted_and_replaced_by_a_verified_download(tmp_path, monkeypatch):
    cache = isolate_cache(tmp_path, monkeypatch)
    bad = "train-images-idx3-ubyte.gz"
    folder_with(cache, bad, gzip_bomb())
    monkeypatch.setattr(
        data_mod.urllib.request,
        "urlopen",  # a mirror serving the real files
        lambda url, timeout: FakeResponse((MNIST_DIR / url.rsplit("/", 1)[1]).read_bytes()),
    )
    outcome = run_bounded(load_default, seconds=DEADLINE, memory_mb=BUDGET_MB)
    assert outcome.kind == "returned", outcome
    assert (cache / bad).read_bytes() == (MNIST_DIR / bad).read_bytes()  # the bomb is gone, the real file in place
    assert sorted(os.listdir(cache)) == sorted(FILES)  # no .part files


@needs_mnist
def test_gzip_bomb_from_every_mirror_is_refused_and_never_cached(tmp_path, monkeypatch):
    cache = isolate_cache(tmp_path, monkeypatch)
    bad = "train-labels-idx1-ubyte.gz"
    cache.mkdir(parents=True)
    for name in FILES:
        if name != bad:
            shutil.copy(MNIST_DIR / name, cache / name)
    bomb = gzip_bomb()
    monkeypatch.setattr(data_mod, "MIRRORS", ("http://a.invalid/", "http://b.invalid/"))  # short: fits the report
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", lambda url, timeout: FakeResponse(bomb))
    outcome = run_bounded(load_default, seconds=DEADLINE, memory_mb=BUDGET_MB)
    assert outcome.kind == "raised" and outcome.error_type == "MnistError", outcome
    assert f"{bad} is not in {cache} and could not be downloaded" in outcome.message
    assert outcome.message.count("decompresses to more than the official 60,008 bytes") == len(data_mod.MIRRORS)
    assert sorted(os.listdir(cache)) == sorted(n for n in FILES if n != bad)  # nothing bad, no .part files


@needs_mnist
def test_gz_larger_than_any_gzip_of_the_official_file_is_refused_unread(tmp_path):
    # 2 MB of incompressible bytes stored as gzip: far more than the 60,008-byte labels file can take compressed.
    big = gzip.compress(os.urandom(2_000_000), compresslevel=0)
    folder = folder_with(tmp_path / "my-mnist", "train-labels-idx1-ubyte.gz", big)
    with pytest.raises(
        MnistError,
        match=r"train-labels-idx1-ubyte.gz: larger than the official MNIST file "
        r"\(the .gz is 2,000,\d+ bytes",
    ):
        load_mnist(folder, download=False, progress=False)


@needs_mnist
def test_endless_download_stops_at_the_largest_possible_gzip(tmp_path, monkeypatch):
    cache = isolate_cache(tmp_path, monkeypatch)
    missing = "train-labels-idx1-ubyte.gz"  # at most ~1.1 MB as a .gz
    cache.mkdir(parents=True)
    for name in FILES:
        if name != missing:
            shutil.copy(MNIST_DIR / name, cache / name)
    served = []

    class Endless(FakeResponse):
        def read(self, n=-1):  # a mirror that never stops sending (here: stops after 30 MB)
            chunk = b"\0" * n if sum(served) < 30_000_000 else b""
            served.append(len(chunk))
            return chunk

    monkeypatch.setattr(data_mod, "MIRRORS", ("http://mirror.invalid/",))
    monkeypatch.setattr(data_mod.urllib.request, "urlopen", lambda url, timeout: Endless())
    with pytest.raises(MnistError, match=f"{missing} is not in .* larger than the official file"):
        load_mnist(download=True, progress=False)
    assert sum(served) <= data_mod._max_gz_bytes(missing) + (1 << 16)  # the old code took all 30 MB
    assert sorted(os.listdir(cache)) == sorted(n for n in FILES if n != missing)  # no .part file left
