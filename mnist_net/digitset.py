"""A personal digit set: a user's own drawn digits, their labels, and a safe file format for them.

``DigitSet`` is an immutable bundle of plain arrays (n digits)::

    inputs      (n, 784) float32 in [0, 1]   exactly as ``canvas_to_input`` returns them
    labels      (n,)     int64 digits 0-9
    thumbnails  (n, 56, 56) uint8            the canvas drawing reduced, white ink on black
    timestamps  (n,)     float64             unix seconds when each digit was drawn

``add`` / ``remove`` / ``subset`` return new sets and never change the one they are called on,
so a set kept in an app session can be shared between pages without copies or locks.

A set file is an ``.npz`` (a zip of ``.npy`` arrays) holding exactly those four arrays plus
``format_version``. Files travel (download, share, upload), so loading trusts nothing: the
bytes are capped (``MAX_FILE_BYTES``), every zip member's declared size is checked before a
byte of it is decompressed (zip bombs), the member names must be exactly ours, every array
header's dtype and shape is checked before the array is read, and ``np.load`` runs with
``allow_pickle=False`` (no object arrays, nothing in the file runs). Values are then checked
like any set built in memory: labels 0-9, finite inputs in [0, 1], at most ``MAX_DIGITS``.

Non-goals: merging sets from several users, compressing thumbnails beyond zip's deflate,
storing the full-size canvas (the thumbnail is for showing the set, the input for learning).
"""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .config import N_CLASSES, N_INPUTS
from .files import write_atomic
from .preprocess import ENLARGE, SHRINK, ink_map

FORMAT_VERSION = 1
# A person collecting 10 rounds of each digit makes 100; a class sharing sets makes a few
# thousand. 5,000 digits are ~31 MB of arrays uncompressed, and a fine-tune of that many
# still runs in seconds (``finetune.MAX_PERSONAL_DIGITS`` is the same bound).
MAX_DIGITS = 5_000
THUMB_SIDE = 56  # twice MNIST's 28: enough to recognise one's own drawing in a grid
_NPY_HEADER_BYTES = 4096  # an .npy header is ~128 bytes; anything near this is not ours
# Unix seconds: 0 (1970) up to 1e10 (the year 2286); anything else is a corrupt clock value.
MAX_TIMESTAMP = 1e10

# member -> (dtype, shape of one digit's entry: the array's shape after its first axis)
_ARRAYS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "inputs": (np.dtype(np.float32), (N_INPUTS,)),
    "labels": (np.dtype(np.int64), ()),
    "thumbnails": (np.dtype(np.uint8), (THUMB_SIDE, THUMB_SIDE)),
    "timestamps": (np.dtype(np.float64), ()),
}
_MEMBERS = {f"{name}.npy" for name in (*_ARRAYS, "format_version")}
# The biggest valid file: every array at MAX_DIGITS, uncompressed (a stored zip), plus headers.
_BYTES_PER_DIGIT = sum(dtype.itemsize * int(np.prod(tail)) for dtype, tail in _ARRAYS.values())
MAX_FILE_BYTES = MAX_DIGITS * _BYTES_PER_DIGIT + 64 * 1024


class DigitSetError(ValueError):
    """A digit set (or its file) is not valid; the message says why and what to do."""


def _member_cap(name: str) -> int:
    """The most bytes member ``name`` (without .npy) may declare: its array at MAX_DIGITS, plus a header."""
    if name == "format_version":
        return _NPY_HEADER_BYTES + 8
    dtype, tail = _ARRAYS[name]
    return _NPY_HEADER_BYTES + MAX_DIGITS * dtype.itemsize * int(np.prod(tail))


def _frozen(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Our own read-only copy of ``array`` as ``dtype`` (the caller's array is never changed or aliased)."""
    out = np.array(array, dtype=dtype, copy=True, order="C")
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class DigitSet:
    """n personal digits (see the module docstring for the arrays). Immutable: the arrays are
    read-only copies, and every change returns a new set. Raises DigitSetError when built from
    arrays of the wrong shape, kind or range."""

    inputs: np.ndarray  # (n, 784) float32 in [0, 1]
    labels: np.ndarray  # (n,) int64 in 0..9
    thumbnails: np.ndarray  # (n, 56, 56) uint8
    timestamps: np.ndarray  # (n,) float64 unix seconds

    def __post_init__(self) -> None:
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        kinds = {"inputs": "f", "labels": "iu", "thumbnails": "u", "timestamps": "fiu"}
        n = len(arrays["labels"]) if arrays["labels"].ndim == 1 else -1
        for name, (dtype, tail) in _ARRAYS.items():
            a = arrays[name]
            if a.dtype.kind not in kinds[name] or (name == "thumbnails" and a.dtype != np.uint8):
                raise DigitSetError(f"{name} must be {dtype} numbers, got dtype {a.dtype}")
            if a.ndim != 1 + len(tail) or a.shape[1:] != tail or len(a) != n:
                want = ", ".join(map(str, (n if n >= 0 else "n", *tail)))
                raise DigitSetError(f"{name} must have shape ({want}), got {a.shape}")
        if n > MAX_DIGITS:
            raise DigitSetError(f"a digit set holds at most {MAX_DIGITS:,} digits, this one has {n:,}")
        inputs, labels, stamps = arrays["inputs"], arrays["labels"], arrays["timestamps"]
        if n and not np.all(np.isfinite(inputs)):
            raise DigitSetError("inputs contain NaN or infinite values")
        if n and (inputs.min() < 0 or inputs.max() > 1):
            raise DigitSetError(f"inputs must be pixels in [0, 1], got values in [{inputs.min():g}, {inputs.max():g}]")
        if n and (labels.min() < 0 or labels.max() >= N_CLASSES):
            bad = labels[(labels < 0) | (labels >= N_CLASSES)][0]
            raise DigitSetError(f"labels must be digits 0-9, found {bad}")
        if n and not (np.all(np.isfinite(stamps)) and stamps.min() >= 0 and stamps.max() <= MAX_TIMESTAMP):
            raise DigitSetError("timestamps must be unix seconds between 1970 and 2286")
        for name, (dtype, _) in _ARRAYS.items():
            object.__setattr__(self, name, _frozen(arrays[name], dtype))

    @classmethod
    def empty(cls) -> DigitSet:
        """A set with no digits."""
        return cls(
            np.zeros((0, N_INPUTS), np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, THUMB_SIDE, THUMB_SIDE), np.uint8),
            np.zeros(0, np.float64),
        )

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        """Digits per class, (10,) int64: counts()[7] is how many 7s the set holds."""
        return np.bincount(self.labels, minlength=N_CLASSES).astype(np.int64)

    def add(self, x: np.ndarray, label: int, thumbnail: np.ndarray, when: float | None = None) -> DigitSet:
        """A new set with one more digit at the end: x (784,) (or (1, 784)) float in [0, 1] from
        ``canvas_to_input``, label 0-9, thumbnail (56, 56) uint8 (``thumbnail_from_canvas``),
        when: unix seconds (default now). Raises DigitSetError when the set is full or an
        argument is wrong."""
        if len(self) >= MAX_DIGITS:
            raise DigitSetError(f"the set is full ({MAX_DIGITS:,} digits); delete some or save it and start a new one")
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= int(label) < N_CLASSES:
            raise DigitSetError(f"label must be a digit 0-9, got {label!r}")
        x = np.asarray(x)
        if x.size != N_INPUTS or x.ndim not in (1, 2):
            raise DigitSetError(f"x must be one input of {N_INPUTS} pixels (from canvas_to_input), got shape {x.shape}")
        thumb = np.asarray(thumbnail)
        if thumb.dtype != np.uint8 or thumb.shape != (THUMB_SIDE, THUMB_SIDE):
            raise DigitSetError(
                f"thumbnails must have shape ({THUMB_SIDE}, {THUMB_SIDE}) and dtype uint8 (from "
                f"thumbnail_from_canvas), got {thumb.shape} {thumb.dtype}"
            )
        stamp = time.time() if when is None else when
        return DigitSet(
            np.concatenate([self.inputs, x.reshape(1, N_INPUTS).astype(np.float32, copy=False)]),
            np.append(self.labels, np.int64(label)),
            np.concatenate([self.thumbnails, thumb[None]]),
            np.append(self.timestamps, np.float64(stamp)),
        )

    def remove(self, index: int) -> DigitSet:
        """A new set without digit ``index`` (0 <= index < len); IndexError for any other index."""
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= int(index) < len(self):
            raise IndexError(f"no digit {index!r} in a set of {len(self)}")
        keep = np.ones(len(self), bool)
        keep[int(index)] = False
        return self.subset(np.flatnonzero(keep))

    def subset(self, indices: Sequence[int] | np.ndarray) -> DigitSet:
        """A new set of the digits at ``indices`` (ints in 0..len-1, in the order given; or a
        boolean mask of length len). IndexError for an index outside the set."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"a mask must have {len(self)} entries, got shape {idx.shape}")
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise IndexError(f"indices must be a list of whole numbers, got {idx.dtype} of shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must be in 0..{len(self) - 1}, got {idx.min()}..{idx.max()}")
        return DigitSet(self.inputs[idx], self.labels[idx], self.thumbnails[idx], self.timestamps[idx])

    def extend(self, other: DigitSet) -> DigitSet:
        """A new set: this one's digits, then ``other``'s (e.g. an uploaded set added to the session's)."""
        if len(self) + len(other) > MAX_DIGITS:
            raise DigitSetError(
                f"together the sets hold {len(self) + len(other):,} digits; at most {MAX_DIGITS:,} fit in one set"
            )
        return DigitSet(
            np.concatenate([self.inputs, other.inputs]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.thumbnails, other.thumbnails]),
            np.concatenate([self.timestamps, other.timestamps]),
        )


def thumbnail_from_canvas(image_data: np.ndarray) -> np.ndarray:
    """A canvas drawing (H, W, 4) uint8 RGBA (or any image ``canvas_to_input`` takes) -> (56, 56) uint8,
    white ink on black, for showing the set as a grid.

    The ink is found as ``canvas_to_input`` finds it (``preprocess.ink_map``: alpha flattened,
    light backgrounds inverted); the whole canvas is kept, padded to a square (aspect kept) and
    resized with the same filters. A blank canvas gives an all-black thumbnail.
    Raises ValueError like ``canvas_to_input`` for arrays it cannot use.
    """
    ink = ink_map(image_data)
    if ink is None:
        return np.zeros((THUMB_SIDE, THUMB_SIDE), np.uint8)
    h, w = ink.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = ink
    resample = SHRINK if side >= THUMB_SIDE else ENLARGE
    small = np.asarray(Image.fromarray(square, mode="F").resize((THUMB_SIDE, THUMB_SIDE), resample), np.float32)
    return np.clip(np.rint(small * 255), 0, 255).astype(np.uint8)


# --- the file ------------------------------------------------------------------------------------


def digit_set_to_bytes(ds: DigitSet) -> bytes:
    """The bytes of a set file: a compressed ``.npz`` of the four arrays and ``format_version``."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        format_version=np.array(FORMAT_VERSION, np.int64),
        inputs=ds.inputs,
        labels=ds.labels,
        thumbnails=ds.thumbnails,
        timestamps=ds.timestamps,
    )
    return buffer.getvalue()


def _check_members(zf: zipfile.ZipFile) -> None:
    """Exactly our members, each plainly stored or deflated, unencrypted, declaring at most its cap."""
    infos = zf.infolist()
    names = [info.filename for info in infos]
    if len(names) != len(set(names)) or set(names) != _MEMBERS:
        missing, extra = sorted(_MEMBERS - set(names)), sorted(set(names) - _MEMBERS)[:5]
        detail = f"missing {missing}" if missing else ""
        detail += ("; " if detail and extra else "") + (f"unexpected {extra}" if extra else "")
        raise DigitSetError(f"not a digit set file: {detail or 'a member appears twice'}")
    for info in infos:
        if info.flag_bits & 0x1:
            raise DigitSetError(f"not a digit set file: {info.filename} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DigitSetError(f"not a digit set file: {info.filename} uses an unsupported compression")
        cap = _member_cap(info.filename.removesuffix(".npy"))
        if info.file_size > cap:
            raise DigitSetError(
                f"not a digit set file: {info.filename} would unpack to {info.file_size:,} bytes, "
                f"more than {MAX_DIGITS:,} digits can need ({cap:,})"
            )


def _check_header(zf: zipfile.ZipFile, name: str) -> tuple[int, ...]:
    """Read only the .npy header of member ``name``; check its dtype and shape; return the shape."""
    with zf.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_NPY_HEADER_BYTES)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_NPY_HEADER_BYTES)
        else:
            raise DigitSetError(f"not a digit set file: {name} is an .npy of unknown version {version}")
    if name == "format_version":
        expected_dtype, tail = np.dtype(np.int64), None
    else:
        expected_dtype, tail = _ARRAYS[name]
    if dtype != expected_dtype:
        raise DigitSetError(f"not a digit set file: {name} holds {dtype}, expected {expected_dtype}")
    if tail is None:
        if shape != ():
            raise DigitSetError(f"not a digit set file: format_version has shape {shape}, expected one number")
    elif len(shape) != 1 + len(tail) or tuple(shape[1:]) != tail or not 0 <= shape[0] <= MAX_DIGITS:
        if len(shape) == 1 + len(tail) and tuple(shape[1:]) == tail:
            raise DigitSetError(f"the file holds {shape[0]:,} digits; a digit set holds at most {MAX_DIGITS:,}")
        want = ", ".join(map(str, ("n", *tail)))
        raise DigitSetError(f"not a digit set file: {name} has shape {shape}, expected ({want})")
    return tuple(shape)


def digit_set_from_bytes(data: bytes) -> DigitSet:
    """The DigitSet in a set file's bytes; DigitSetError (saying why) for anything that is not one.

    Checked before anything is decompressed or allocated: the byte count, the zip's member
    names and declared sizes, each array's dtype and shape; then read with
    ``np.load(allow_pickle=False)`` and validated like any DigitSet.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DigitSetError(f"expected the file's bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise DigitSetError("the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise DigitSetError(
            f"the file is {len(data):,} bytes; a digit set file is at most {MAX_FILE_BYTES:,} ({MAX_DIGITS:,} digits)"
        )
    if bytes(data[:4]) != b"PK\x03\x04":
        raise DigitSetError("not a digit set file: it is not an .npz (zip) archive")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            _check_members(zf)
            if _check_header(zf, "format_version") != ():
                raise DigitSetError("not a digit set file: bad format_version")
            shapes = {name: _check_header(zf, name) for name in _ARRAYS}
        if len({shape[0] for shape in shapes.values()}) != 1:
            counts = ", ".join(f"{name} {shape[0]}" for name, shape in shapes.items())
            raise DigitSetError(f"the file's arrays disagree on how many digits it holds ({counts})")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            version = int(npz["format_version"])
            if version > FORMAT_VERSION:
                raise DigitSetError(
                    f"this digit set file has format {version}, newer than this program reads "
                    f"({FORMAT_VERSION}); upgrade mnist_net to load it"
                )
            if version < 1:
                raise DigitSetError(f"not a digit set file: unknown format_version {version}")
            arrays = {name: npz[name] for name in _ARRAYS}
    except DigitSetError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError) as e:
        # Truncated or corrupt archives (bad CRC, short member, broken deflate stream) land here.
        raise DigitSetError(f"the digit set file is damaged or truncated ({type(e).__name__}: {e})") from None
    except Exception as e:  # zlib.error and other decoder errors: still just a damaged file
        raise DigitSetError(f"the digit set file is damaged ({type(e).__name__})") from None
    try:
        return DigitSet(**arrays)
    except DigitSetError as e:
        raise DigitSetError(f"the digit set file holds invalid digits: {e}") from None


def save_digit_set(path: str | os.PathLike, ds: DigitSet) -> Path:
    """Write a set file atomically (``files.write_atomic``: no half-written file, an earlier one
    kept intact on failure); returns the path. Raises OSError naming the path."""
    return write_atomic(path, digit_set_to_bytes(ds), what="digit set")


def load_digit_set(path: str | os.PathLike) -> DigitSet:
    """Read and validate a set file (``digit_set_from_bytes``). DigitSetError naming the path for
    a missing, unreadable, oversized or invalid file; the read is bounded even if the file lies."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang the read
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DigitSetError(f"{path}: not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise DigitSetError(f"{path}: no such digit set file") from None
    except IsADirectoryError:
        raise DigitSetError(f"{path}: is a directory, not a digit set file") from None
    except PermissionError:
        raise DigitSetError(f"{path}: permission denied") from None
    except OSError as e:
        raise DigitSetError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        return digit_set_from_bytes(data)
    except DigitSetError as e:
        raise DigitSetError(f"{path}: {e}") from None


__all__ = [
    "MAX_DIGITS",
    "MAX_FILE_BYTES",
    "THUMB_SIDE",
    "DigitSet",
    "DigitSetError",
    "digit_set_from_bytes",
    "digit_set_to_bytes",
    "load_digit_set",
    "save_digit_set",
    "thumbnail_from_canvas",
]
