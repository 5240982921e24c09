"""MNIST: find, download, verify and parse the four standard IDX gz files.

Where it looks, in order: a directory passed in, ``$MNIST_DIR``, then a per-user
cache (``$XDG_CACHE_HOME/mnist_net/mnist`` or ``~/.cache/mnist_net/mnist``). Files
missing from the cache are downloaded from public mirrors. Every file is verified by
the sha256 of its decompressed content before it is used; a bad download never stays
in the cache. Files are decompressed as a stream capped at the official decompressed
size (DECOMPRESSED_SIZES), so a gzip bomb is refused, naming the file, before it can
expand. Non-goals: other datasets, streaming the data set to the caller.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

FILES = {
    # name: (sha256 of decompressed bytes, expected count)
    "train-images-idx3-ubyte.gz": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 60000),
    "train-labels-idx1-ubyte.gz": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60000),
    "t10k-images-idx3-ubyte.gz": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 10000),
    "t10k-labels-idx1-ubyte.gz": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10000),
}
# Exact size of each file's decompressed content (IDX header + data), checked against /work/shared/mnist. A .gz is
# decompressed as a stream and refused as soon as it yields more than this: a gzip bomb never expands in memory.
DECOMPRESSED_SIZES = {
    "train-images-idx3-ubyte.gz": 47_040_016,  # 16 + 60,000 x 28 x 28
    "train-labels-idx1-ubyte.gz": 60_008,  # 8 + 60,000
    "t10k-images-idx3-ubyte.gz": 7_840_016,  # 16 + 10,000 x 28 x 28
    "t10k-labels-idx1-ubyte.gz": 10_008,  # 8 + 10,000
}
_CHUNK = 1 << 20  # decompress 1 MiB at a time
_READ = 1 << 18  # read the .gz 256 KiB at a time
_GZIP = 31  # zlib wbits for the gzip wrapper: zlib checks the header, the CRC-32 and the length of each member
# A gzip file is larger than its content only by its framing: 5 bytes per 64 KiB stored block, a header that may
# carry a name, a comment and a 64 KiB extra field, and ~20 bytes per member. 1% + 1 MiB is far more than that; a
# bigger .gz is not MNIST (and reading gigabytes of empty gzip members would take minutes).
_GZ_SLACK_FRACTION, _GZ_SLACK_BYTES = 0.01, 1 << 20

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)

SIDE = 28  # MNIST images are SIDE x SIDE pixels
BOX = 20  # MNIST fitted each digit's ink into a BOX x BOX box before centring it in SIDE x SIDE
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
_FIX_HINT = (
    "Set MNIST_DIR to a folder holding the four MNIST .gz files "
    "(or pass --data-dir), or connect to the internet so they can be downloaded."
)


class MnistError(RuntimeError):
    """MNIST could not be found, downloaded, verified or parsed. The message says how to fix it."""


@dataclass(frozen=True)
class Mnist:
    """The loaded data set. Images uint8 (n, 784), labels uint8 (n,)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str  # directory the files came from
    data_hash: str  # sha256 over the four files' content hashes


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnist_net" / "mnist"


def parse_idx(raw: bytes | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes: images -> (n, rows*cols) uint8, labels -> (n,) uint8."""
    if len(raw) < 8:
        raise MnistError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    magic, count = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if magic == IMAGE_MAGIC:
        if len(raw) < 16:
            raise MnistError(f"{name}: truncated IDX image header")
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        expected = 16 + count * rows * cols
        if len(raw) != expected:
            raise MnistError(
                f"{name}: expected {expected} bytes for {count} images of "
                f"{rows}x{cols}, found {len(raw)} (truncated or corrupt)"
            )
        return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows * cols)
    if magic == LABEL_MAGIC:
        if len(raw) != 8 + count:
            raise MnistError(
                f"{name}: expected {8 + count} bytes for {count} labels, found {len(raw)} (truncated or corrupt)"
            )
        labels = np.frombuffer(raw, np.uint8, offset=8)
        if labels.size and labels.max() > 9:
            raise MnistError(f"{name}: label {labels.max()} is not a digit")
        return labels
    raise MnistError(f"{name}: wrong magic number 0x{magic:08x}; not an MNIST IDX file")


class _NotOfficial(Exception):
    """A .gz that is not the official file. ``kind``: "gzip" (cannot decompress), "size" (larger than the official
    file) or "hash" (different content); the message gives the detail."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def _max_gz_bytes(name: str) -> int:
    """The largest a .gz of the official content can be (see _GZ_SLACK_FRACTION)."""
    return int(DECOMPRESSED_SIZES[name] * (1 + _GZ_SLACK_FRACTION)) + _GZ_SLACK_BYTES


def _gunzip(path: Path):
    """Yield a .gz file's content in pieces of at most _CHUNK bytes, member after member, never more at once.

    zlib directly rather than the gzip module: the same checks, ~10% less CPU for the 47 MB training images.
    Raises zlib.error for damaged data and EOFError for a file that ends inside a member.
    """
    with open(path, "rb") as f:
        member, pending, started = zlib.decompressobj(_GZIP), b"", False
        while pending or (pending := f.read(_READ)):
            out = member.decompress(pending, _CHUNK)
            started, pending = True, member.unconsumed_tail  # input left over once _CHUNK bytes came out
            if out:
                yield out
            if member.eof:  # another member may follow, as in a concatenation of .gz files
                member, pending, started = zlib.decompressobj(_GZIP), member.unused_data + pending, False
        if started:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _decompress_verified(path: Path, name: str, keep: bool) -> memoryview | None:
    """Decompress ``path`` as a stream, hashing as it goes, and check it is the official ``name``.

    Refuses (``_NotOfficial``) a .gz bigger than the official file could be compressed, and stops as soon as the
    output passes the official decompressed size, so memory never exceeds that size (held only if ``keep``) plus
    one chunk. Returns a read-only view of the content if ``keep``, else None.
    """
    cap, expected_sha = DECOMPRESSED_SIZES[name], FILES[name][0]
    sha, done = hashlib.sha256(), 0
    try:
        size = path.stat().st_size
        if size > _max_gz_bytes(name):
            raise _NotOfficial(
                "size", f"the .gz is {size:,} bytes, more than any gzip of the official {cap:,} bytes could be"
            )
        content = bytearray(cap) if keep else None
        for chunk in _gunzip(path):
            if done + len(chunk) > cap:
                raise _NotOfficial("size", f"it decompresses to more than the official {cap:,} bytes")
            if content is not None:
                content[done : done + len(chunk)] = chunk
            sha.update(chunk)
            done += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise _NotOfficial("gzip", str(e)) from None
    if sha.hexdigest() != expected_sha:
        raise _NotOfficial("hash", "content hash mismatch")
    return memoryview(content).toreadonly() if content is not None else None  # the hash matched: done == cap


def _read_verified(path: Path) -> memoryview:
    """Decompress a .gz file (streamed, capped at the official size) and check its content hash.

    MnistError naming the file if anything is off. Returns a read-only view of the decompressed bytes.
    """
    try:
        content = _decompress_verified(path, path.name, keep=True)
        if content is None:  # keep=True always returns the bytes
            raise RuntimeError(f"{path}: verified but not kept")
        return content
    except _NotOfficial as e:
        if e.kind == "gzip":
            raise MnistError(
                f"{path}: cannot decompress ({e}); the file is truncated or corrupt. Delete it and try again."
            ) from None
        if e.kind == "size":
            raise MnistError(
                f"{path}: larger than the official MNIST file ({e}); corrupt, or a gzip bomb. "
                "Refused. Delete it and try again."
            ) from None
        raise MnistError(
            f"{path}: content hash does not match the official MNIST file "
            "(corrupt or a different file). Delete it and try again."
        ) from None


def _download(name: str, dest_dir: Path, progress: bool) -> Path:
    """Fetch one file from the first mirror that works; verify before it enters the cache."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS:
        url = mirror + name
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=name + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    done += len(chunk)
                    if done > _max_gz_bytes(name):  # a mirror streaming without end must not fill the disk
                        raise MnistError(f"larger than the official file (more than {_max_gz_bytes(name):,} bytes)")
                    if progress and total:
                        pct = 100 * done // total
                        bar = "#" * (pct // 4)
                        print(f"\r{name}: [{bar:<25}] {pct:3d}%", end="", file=sys.stderr)
            if progress:
                print(file=sys.stderr)
            tmp_path = Path(tmp)
            final = dest_dir / name
            # Verify under the temp name, so a bad download never sits in the cache; streamed and capped like
            # _read_verified, so a gzip bomb from a mirror never expands in memory.
            try:
                _decompress_verified(tmp_path, name, keep=False)
            except _NotOfficial as e:
                raise MnistError(str(e) if e.kind == "hash" else f"{e}: not the official file") from None
            os.replace(tmp_path, final)
            return final
        except Exception as e:  # any mirror failure: try the next one
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise MnistError(f"{name} is not in {dest_dir} and could not be downloaded ({'; '.join(errors)}). {_FIX_HINT}")


def find_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True) -> Path:
    """Return a directory holding all four verified-by-name files, downloading into the cache if needed."""
    looked = []
    for cand in (data_dir, os.environ.get("MNIST_DIR")):
        if cand:
            d = Path(cand).expanduser()
            looked.append(str(d))
            if all((d / n).is_file() for n in FILES):
                return d
            if cand is data_dir:  # an explicit directory that lacks the files is an error
                missing = [n for n in FILES if not (d / n).is_file()]
                raise MnistError(f"{', '.join(missing)} not found in {d}. {_FIX_HINT}")
    d = cache_dir()
    looked.append(str(d))
    missing = [n for n in FILES if not (d / n).is_file()]
    if missing and not download:
        raise MnistError(f"{', '.join(missing)} not found (looked in {', '.join(looked)}). {_FIX_HINT}")
    for name in missing:
        _download(name, d, progress)
    return d


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True) -> Mnist:
    """Load the 60k training and 10k test images, verified against the official hashes.

    Raises MnistError with a message naming the file, where it looked and how to fix it.
    """
    d = find_mnist(data_dir, download, progress)
    arrays = {}
    in_cache = d == cache_dir()
    for name, (_sha, count) in FILES.items():
        path = d / name
        try:
            raw = _read_verified(path)
        except MnistError:
            if not (in_cache and download):
                raise
            path.unlink(missing_ok=True)  # never keep a corrupt file in our cache
            try:
                _download(name, d, progress)
            except MnistError as e:  # say why the file went, not just that it is missing
                raise MnistError(
                    f"{path} was corrupt (wrong content hash, broken gzip data or larger than the official file) and "
                    f"has been deleted; a fresh copy could not be downloaded. {e}"
                ) from None
            raw = _read_verified(path)
        arr = parse_idx(raw, str(path))
        if len(arr) != count:
            raise MnistError(f"{path}: expected {count} entries, found {len(arr)}")
        arrays[name] = arr
    data_hash = hashlib.sha256("".join(sha for sha, _ in FILES.values()).encode()).hexdigest()[:16]
    return Mnist(
        X_train=arrays["train-images-idx3-ubyte.gz"],
        y_train=arrays["train-labels-idx1-ubyte.gz"],
        X_test=arrays["t10k-images-idx3-ubyte.gz"],
        y_test=arrays["t10k-labels-idx1-ubyte.gz"],
        source=str(d),
        data_hash=data_hash,
    )


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices: (train_idx, val_idx), each class split in proportion."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


# --- images -> the network's inputs -----------------------------------------------------------


def as_input(X: ArrayLike, keep_uint8: bool = False) -> np.ndarray:
    """Validate and convert images to float32 in [0, 1], shape (n, 784).

    Accepts (784,), (n, 784) and (n, 28, 28). uint8 input is scaled by 1/255 (or, with
    ``keep_uint8``, returned as uint8 for ``uint8_to_float`` to scale batch by batch); float
    input must already be in [0, 1]. ValueError with the reason for anything else.
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim == 3:
        X = X.reshape(len(X), -1)
    if X.ndim != 2:
        raise ValueError(f"expected images of shape (n, 784), got {X.shape}")
    if X.dtype == np.uint8:
        return X if keep_uint8 else uint8_to_float(X)
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"expected numeric images, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.all(np.isfinite(X)):
        raise ValueError("images contain NaN or infinite values")
    # A little slack for rounding; 0-255 floats are a common slip and would predict nonsense.
    if X.size and (X.min() < -1e-3 or X.max() > 1 + 1e-3):
        raise ValueError(
            f"float images must hold pixels in [0, 1], got values in [{X.min():g}, {X.max():g}] "
            "(divide 0-255 pixel values by 255)"
        )
    return X


_INV_255 = np.float32(1 / 255)  # 255 * _INV_255 rounds to exactly 1.0 in float32, so the range stays [0, 1]


def uint8_to_float(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 pixels (n, 784) -> float32 in [0, 1], the same values as_input gives.

    A plain cast into float32, then a float32-only multiply in place: a quarter faster than the
    mixed-type divide it replaced (which converts and divides in one slower loop). Values are
    within one float32 rounding of X / 255. ``out``: an optional float32 array of X's shape.
    """
    if out is None:
        out = np.empty(X.shape, np.float32)
    np.copyto(out, X, casting="unsafe")
    return np.multiply(out, _INV_255, out=out)


def as_labels(y: ArrayLike) -> np.ndarray:
    """Labels as int64 (n,), checked to be digits 0-9."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of digits 0-9, got shape {y.shape}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError("labels must be digits 0-9")
    return y
