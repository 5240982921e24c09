"""MNIST loading: IDX parsing of files the test writes, hash checks, where it looks, downloads."""

import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from mnist_net import data as data_mod
from mnist_net.data import FILES, MnistError, load_mnist, parse_idx, stratified_split

MNIST_DIR = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">iiii", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">ii", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def test_parse_idx_images_and_labels():
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(idx_images(imgs))
    assert out.shape == (2, 12) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, imgs.reshape(2, 12))
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_labels(labels)), labels)


@pytest.mark.parametrize(
    "raw,message",
    [
        (b"", "too short"),
        (struct.pack(">ii", 0x1234, 1) + b"\0" * 8, "wrong magic"),
        (idx_images(np.zeros((3, 2, 2)))[:-1], "truncated"),
        (idx_images(np.zeros((3, 2, 2))) + b"\0", "truncated or corrupt"),
        (idx_labels(np.array([1, 2, 3]))[:-2], "truncated"),
        (idx_labels(np.array([1, 2, 12])), "not a digit"),
        (struct.pack(">ii", 0x803, 1) + b"\0\0", "truncated IDX image header"),
    ],
)
def test_parse_idx_rejects_bad_files(raw, message):
    with pytest.raises(MnistError, match=message):
        parse_idx(raw, "f.idx")


def write_fake_mnist(folder: Path, corrupt: str | None = None) -> None:
    """Files with the right names but made-up content (so their hashes cannot match)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        raw = idx_images(np.zeros((2, 28, 28))) if "images" in name else idx_labels(np.zeros(2))
        blob = gzip.compress(raw)
        if name == corrupt:
            blob = blob[: len(blob) // 2]
        (folder / name).write_bytes(blob)


def test_hash_mismatch_names_the_file(tmp_path):
    write_fake_mnist(tmp_path)
    with pytest.raises(MnistError, match="train-images-idx3-ubyte.gz: content hash does not match"):
        load_mnist(tmp_path, download=False)


def test_truncated_gzip_is_reported(tmp_path):
    write_fake_mnist(tmp_path, corrupt="train-images-idx3-ubyte.gz")
    with pytest.raises(MnistError, match="truncated or corrupt"):
        load_mnist(tmp_path, download=False)


def test_missing_files_offline_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(MnistError) as e:
        load_mnist(download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "cache") in msg and "MNIST_DIR" in msg


def test_explicit_dir_without_files_is_an_error(tmp_path):
    with pytest.raises(MnistError, match=f"not found in {tmp_path}"):
        load_mnist(tmp_path)


def test_bad_download_never_stays_in_cache_and_all_mirrors_are_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tried = []

    class FakeResponse(io.BytesIO):
        headers = {"Content-Length": "0"}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout):
        tried.append(url)
        if len(tried) == 1:
            raise OSError("connection refused")
        return FakeResponse(gzip.compress(b"not mnist"))  # wrong content from the second mirror

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(MnistError, match="could not be downloaded"):
        load_mnist(progress=False)
    assert len(tried) == len(data_mod.MIRRORS)
    cache = data_mod.cache_dir()
    assert not any(cache.iterdir()), "a failed download left files in the cache"


def test_download_fills_cache_from_a_mirror(tmp_path, monkeypatch):
    if not Path(MNIST_DIR, "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("needs MNIST_DIR")
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class FakeResponse(io.BytesIO):
        headers = {}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout):  # serves the real files, as a mirror would
        return FakeResponse(Path(MNIST_DIR, url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", fake_urlopen)
    d = load_mnist(progress=False)
    assert d.X_train.shape == (60000, 784) and d.source == str(data_mod.cache_dir())
    assert sorted(p.name for p in data_mod.cache_dir().iterdir()) == sorted(FILES)


@pytest.mark.skipif(not Path(MNIST_DIR, "train-images-idx3-ubyte.gz").exists(), reason="needs MNIST_DIR")
def test_real_mnist_shapes_and_labels():
    d = load_mnist(MNIST_DIR, download=False)
    assert d.X_train.shape == (60000, 784) and d.X_train.dtype == np.uint8
    assert d.y_train.shape == (60000,) and d.X_test.shape == (10000, 784) and d.y_test.shape == (10000,)
    assert set(np.unique(d.y_test)) == set(range(10))
    assert d.X_train.max() == 255 and d.X_train.min() == 0


def test_stratified_split_is_seeded_and_proportional():
    y = np.repeat(np.arange(10), 100)
    tr, va = stratified_split(y, 0.2, seed=5)
    assert len(va) == 200 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 1000
    assert np.all(np.bincount(y[va]) == 20)
    tr2, va2 = stratified_split(y, 0.2, seed=5)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, stratified_split(y, 0.2, seed=6)[1])
