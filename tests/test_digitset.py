"""Personal digit sets: the immutable set, thumbnails, the file round trip, and hostile or corrupt files refused."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from mnist_net import canvas_to_input
from mnist_net.digitset import (
    FORMAT_VERSION,
    MAX_DIGITS,
    MAX_FILE_BYTES,
    THUMB_SIDE,
    DigitSet,
    DigitSetError,
    digit_set_from_bytes,
    digit_set_to_bytes,
    load_digit_set,
    save_digit_set,
    thumbnail_from_canvas,
)


def canvas_with_stroke(rows=slice(60, 220), cols=slice(130, 150), background=0, ink=255, alpha=None) -> np.ndarray:
    """A 280x280 RGBA canvas with one upright bar (a 1)."""
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., :3] = background
    canvas[..., 3] = 255 if alpha is None else 0
    canvas[rows, cols, :3] = ink
    canvas[rows, cols, 3] = 255
    return canvas


def small_set(n: int = 12, seed: int = 0) -> DigitSet:
    rng = np.random.default_rng(seed)
    ds = DigitSet.empty()
    for i in range(n):
        x = rng.random(784, dtype=np.float32)
        thumb = rng.integers(0, 256, (THUMB_SIDE, THUMB_SIDE), dtype=np.uint8)
        ds = ds.add(x, i % 10, thumb, when=1_764_000_000.0 + i)
    return ds


def arrays_of(ds: DigitSet) -> dict[str, np.ndarray]:
    return {"inputs": ds.inputs, "labels": ds.labels, "thumbnails": ds.thumbnails, "timestamps": ds.timestamps}


def npz_bytes(compress: bool = True, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def valid_members(ds: DigitSet | None = None) -> dict[str, np.ndarray]:
    return {"format_version": np.array(FORMAT_VERSION, np.int64), **arrays_of(ds or small_set())}


def zip_of(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


# --- the set in memory -----------------------------------------------------------------------------


def test_empty_set():
    ds = DigitSet.empty()
    assert len(ds) == 0 and ds.inputs.shape == (0, 784) and ds.thumbnails.shape == (0, THUMB_SIDE, THUMB_SIDE)
    np.testing.assert_array_equal(ds.counts(), np.zeros(10, np.int64))


def test_add_remove_subset_leave_the_original_untouched():
    ds = small_set(12)
    before = {k: v.copy() for k, v in arrays_of(ds).items()}
    grown = ds.add(np.full(784, 0.5, np.float32), 3, np.zeros((THUMB_SIDE, THUMB_SIDE), np.uint8))
    shrunk = ds.remove(0)
    picked = ds.subset([5, 1])
    for name, array in arrays_of(ds).items():
        np.testing.assert_array_equal(array, before[name])
    assert len(ds) == 12 and len(grown) == 13 and len(shrunk) == 11 and len(picked) == 2
    assert grown.labels[-1] == 3 and np.all(grown.inputs[-1] == 0.5)
    np.testing.assert_array_equal(shrunk.inputs, ds.inputs[1:])
    np.testing.assert_array_equal(picked.labels, ds.labels[[5, 1]])
    np.testing.assert_array_equal(ds.counts(), [2, 2, 1, 1, 1, 1, 1, 1, 1, 1])
    assert grown.counts()[3] == 2


def test_arrays_are_read_only_copies_of_what_the_caller_gave():
    x = np.zeros((2, 784), np.float32)
    ds = DigitSet(x, np.array([1, 2]), np.zeros((2, THUMB_SIDE, THUMB_SIDE), np.uint8), np.array([0.0, 1.0]))
    x[:] = 1.0  # the caller changes its own array afterwards
    assert ds.inputs.max() == 0.0
    with pytest.raises(ValueError):
        ds.inputs[0, 0] = 1.0
    assert ds.labels.dtype == np.int64 and ds.timestamps.dtype == np.float64


def test_add_stamps_now_by_default_and_takes_a_canvas_input():
    canvas = canvas_with_stroke()
    ds = DigitSet.empty().add(canvas_to_input(canvas), 1, thumbnail_from_canvas(canvas))
    assert len(ds) == 1 and 1.7e9 < ds.timestamps[0] < 1e10


@pytest.mark.parametrize(
    "label, x, thumb, match",
    [
        (10, np.zeros(784), np.zeros((56, 56), np.uint8), "digit 0-9"),
        (-1, np.zeros(784), np.zeros((56, 56), np.uint8), "digit 0-9"),
        (True, np.zeros(784), np.zeros((56, 56), np.uint8), "digit 0-9"),
        (2.0, np.zeros(784), np.zeros((56, 56), np.uint8), "digit 0-9"),
        (3, np.zeros(785), np.zeros((56, 56), np.uint8), "784 pixels"),
        (3, np.full(784, np.nan), np.zeros((56, 56), np.uint8), "NaN"),
        (3, np.full(784, 2.0), np.zeros((56, 56), np.uint8), r"\[0, 1\]"),
        (3, np.zeros(784), np.zeros((28, 28), np.uint8), "thumbnails must have shape"),
        (3, np.zeros(784), np.zeros((56, 56), np.float32), "uint8"),
        (3, np.zeros(784), None, "thumbnails"),
    ],
)
def test_add_refuses_bad_digits(label, x, thumb, match):
    with pytest.raises(DigitSetError, match=match):
        DigitSet.empty().add(x, label, thumb)


def test_constructor_refuses_inconsistent_or_bad_arrays():
    good = arrays_of(small_set(4))
    for name, bad, match in [
        ("labels", good["labels"][:3], "shape"),
        ("labels", good["labels"].astype(np.float64), "dtype"),
        ("inputs", good["inputs"][:, :783], "shape"),
        ("timestamps", np.array([np.nan, 0, 0, 0]), "timestamps"),
        ("timestamps", np.array([-5.0, 0, 0, 0]), "timestamps"),
        ("thumbnails", good["thumbnails"].astype(np.int16), "uint8"),
    ]:
        with pytest.raises(DigitSetError, match=match):
            DigitSet(**{**good, name: bad})


def test_remove_and_subset_refuse_indices_outside_the_set():
    ds = small_set(3)
    for index in (3, -1, True):
        with pytest.raises(IndexError):
            ds.remove(index)
    with pytest.raises(IndexError):
        ds.subset([0, 3])
    with pytest.raises(IndexError):
        ds.subset(np.array([True, False]))
    assert len(ds.subset(np.array([True, False, True]))) == 2 and len(ds.subset([])) == 0


def test_a_full_set_refuses_one_more_digit():
    n = MAX_DIGITS
    full = DigitSet(
        np.zeros((n, 784), np.float32),
        np.arange(n) % 10,
        np.zeros((n, THUMB_SIDE, THUMB_SIDE), np.uint8),
        np.zeros(n),
    )
    with pytest.raises(DigitSetError, match="full"):
        full.add(np.zeros(784), 1, np.zeros((THUMB_SIDE, THUMB_SIDE), np.uint8))
    with pytest.raises(DigitSetError, match="at most"):
        full.extend(small_set(1))


def test_extend_appends_another_set():
    a, b = small_set(3, seed=1), small_set(2, seed=2)
    both = a.extend(b)
    np.testing.assert_array_equal(both.inputs, np.concatenate([a.inputs, b.inputs]))
    assert len(a) == 3 and len(both) == 5


# --- thumbnails ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "canvas",
    [
        canvas_with_stroke(),  # white on black
        canvas_with_stroke(background=255, ink=0),  # black on white
        canvas_with_stroke(background=0, ink=0, alpha=True),  # black ink on a transparent canvas
    ],
    ids=["white_on_black", "black_on_white", "transparent"],
)
def test_thumbnail_is_white_ink_on_black_where_the_stroke_was(canvas):
    thumb = thumbnail_from_canvas(canvas)
    assert thumb.shape == (THUMB_SIDE, THUMB_SIDE) and thumb.dtype == np.uint8
    # The bar covers rows 60-220 and columns 130-150 of 280: rows 12-44, columns 26-30 of 56.
    assert thumb[20:40, 27:29].min() > 200
    assert thumb[:, :20].max() == 0 and thumb[:5].max() == 0


def test_thumbnail_of_a_blank_or_non_square_canvas():
    assert thumbnail_from_canvas(np.zeros((280, 280, 4), np.uint8)).max() == 0
    wide = np.zeros((100, 400, 4), np.uint8)
    wide[..., 3] = 255
    wide[40:60, 180:220, :3] = 255
    thumb = thumbnail_from_canvas(wide)
    assert thumb.shape == (THUMB_SIDE, THUMB_SIDE) and thumb[27:29, 27:29].min() > 200
    with pytest.raises(ValueError):
        thumbnail_from_canvas(np.zeros((10, 10, 7), np.uint8))


# --- the file --------------------------------------------------------------------------------------


def test_round_trip_through_bytes_and_files(tmp_path):
    ds = small_set(25)
    back = digit_set_from_bytes(digit_set_to_bytes(ds))
    for name, array in arrays_of(ds).items():
        loaded = arrays_of(back)[name]
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)
    path = save_digit_set(tmp_path / "sets" / "mine.npz", ds)
    np.testing.assert_array_equal(load_digit_set(path).labels, ds.labels)
    assert [p.name for p in path.parent.iterdir()] == ["mine.npz"]  # no temp file left behind
    empty = digit_set_from_bytes(digit_set_to_bytes(DigitSet.empty()))
    assert len(empty) == 0


def test_the_file_is_a_plain_npz_any_numpy_can_read():
    data = digit_set_to_bytes(small_set(3))
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["format_version", "inputs", "labels", "thumbnails", "timestamps"]
        assert int(npz["format_version"]) == FORMAT_VERSION


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a word the error message must contain)."""
    good = valid_members()
    n = len(good["labels"])
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "empty"),
        "not a zip": (b"hello, this is text" * 10, "not an .npz"),
        "a pickle": (pickle.dumps({"inputs": 1}), "not an .npz"),
        "truncated": (npz_bytes(**good)[:-200], "damaged"),
        "truncated early": (npz_bytes(**good)[:300], "damaged"),
        "object array": (npz_bytes(**{**good, "labels": good["labels"].astype(object)}), "object"),
        "pickle as member": (
            zip_of({**{f"{k}.npy": npy(v) for k, v in good.items()}, "labels.npy": pickle.dumps([1, 2])}),
            "damaged",
        ),
        "extra pickle member": (
            zip_of({**{f"{k}.npy": npy(v) for k, v in good.items()}, "evil.pkl": pickle.dumps(print)}),
            "unexpected",
        ),
        "missing member": (npz_bytes(**{k: v for k, v in good.items() if k != "timestamps"}), "missing"),
        "inputs float64": (npz_bytes(**{**good, "inputs": good["inputs"].astype(np.float64)}), "float64"),
        "labels int32": (npz_bytes(**{**good, "labels": good["labels"].astype(np.int32)}), "int32"),
        "labels float": (npz_bytes(**{**good, "labels": good["labels"].astype(np.float64)}), "float64"),
        "thumbs big-endian": (npz_bytes(**{**good, "thumbnails": good["thumbnails"].astype(">u2")}), "expected"),
        "structured": (
            npz_bytes(**{**good, "timestamps": np.zeros(n, dtype=[("a", "f8")])}),
            "expected float64",
        ),
        "inputs 785 wide": (npz_bytes(**{**good, "inputs": np.zeros((n, 785), np.float32)}), "shape"),
        "inputs flat": (npz_bytes(**{**good, "inputs": good["inputs"].ravel()}), "shape"),
        "thumbs 28x28": (npz_bytes(**{**good, "thumbnails": np.zeros((n, 28, 28), np.uint8)}), "shape"),
        "counts disagree": (npz_bytes(**{**good, "labels": good["labels"][:-1]}), "disagree"),
        "NaN input": (npz_bytes(**{**good, "inputs": np.where(np.eye(n, 784) > 0, np.nan, good["inputs"])}), "NaN"),
        "input above 1": (npz_bytes(**{**good, "inputs": good["inputs"] + 1}), "[0, 1]"),
        "label 10": (npz_bytes(**{**good, "labels": np.full(n, 10, np.int64)}), "found 10"),
        "label -1": (npz_bytes(**{**good, "labels": np.full(n, -1, np.int64)}), "found -1"),
        "timestamp inf": (npz_bytes(**{**good, "timestamps": np.full(n, np.inf)}), "timestamps"),
        "future version": (npz_bytes(**{**good, "format_version": np.array(99, np.int64)}), "newer"),
        "version 0": (npz_bytes(**{**good, "format_version": np.array(0, np.int64)}), "format_version"),
        "version as array": (npz_bytes(**{**good, "format_version": np.array([1], np.int64)}), "format_version"),
        "version as text": (npz_bytes(**{**good, "format_version": np.array("1")}), "format_version"),
        # 30 MB of zeros deflate to ~30 kB: the declared size gives it away before anything is unpacked.
        "zip bomb": (
            zip_of({**{f"{k}.npy": npy(v) for k, v in good.items()}, "labels.npy": bytes(30_000_000)}),
            "unpack",
        ),
        "bzip2 member": (zip_of({f"{k}.npy": npy(v) for k, v in good.items()}, zipfile.ZIP_BZIP2), "compression"),
    }
    # A header that declares 10^12 digits in a tiny member: refused from the header, never allocated.
    header = bytearray(npy(good["labels"]))
    fake = header.replace(f"({n},)".encode(), b"(1000000000000,)")
    cases["header declares 10^12 digits"] = (
        zip_of({**{f"{k}.npy": npy(v) for k, v in good.items()}, "labels.npy": bytes(fake)}),
        "at most 5,000",
    )
    many = MAX_DIGITS + 1
    cases["too many digits"] = (
        npz_bytes(
            format_version=good["format_version"],
            inputs=np.zeros((many, 784), np.float32),
            labels=np.zeros(many, np.int64),
            thumbnails=np.zeros((many, THUMB_SIDE, THUMB_SIDE), np.uint8),
            timestamps=np.zeros(many),
        ),
        "5,000",
    )
    return cases


HOSTILE = hostile_files()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_and_corrupt_files_are_refused_with_a_reason(name):
    data, word = HOSTILE[name]
    with pytest.raises(DigitSetError) as caught:
        digit_set_from_bytes(data)
    assert word in str(caught.value), str(caught.value)


def test_declared_size_is_checked_before_anything_is_decompressed(monkeypatch):
    data, _ = HOSTILE["zip bomb"]
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or real_open(self, *a, **k))
    with pytest.raises(DigitSetError, match="unpack"):
        digit_set_from_bytes(data)
    assert opened == []


def test_a_file_above_the_byte_cap_is_refused_unread():
    with pytest.raises(DigitSetError, match="at most"):
        digit_set_from_bytes(b"PK\x03\x04" + bytes(MAX_FILE_BYTES))


def test_random_damage_never_escapes_as_another_error():
    """Flipping bytes anywhere in a valid file gives a valid set or a DigitSetError, nothing else."""
    data = digit_set_to_bytes(small_set(5))
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[pos] = int(rng.integers(0, 256))
        try:
            digit_set_from_bytes(bytes(damaged))
        except DigitSetError:
            refused += 1
    assert refused > 150  # most damage is caught (CRC, headers); none raised anything else


def test_load_digit_set_names_the_path(tmp_path):
    with pytest.raises(DigitSetError, match="no such"):
        load_digit_set(tmp_path / "nope.npz")
    with pytest.raises(DigitSetError, match="directory"):
        load_digit_set(tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DigitSetError, match="bad.npz"):
        load_digit_set(bad)


def test_digit_set_error_is_a_value_error():
    assert issubclass(DigitSetError, ValueError)
