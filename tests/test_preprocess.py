"""Preprocessing invariants for canvas_to_input, and safe decoding of uploads (image_from_bytes).

The drawings are MNIST-shaped strokes redrawn by mnist_net.synth (from a fixed digit
made here, so these tests need no data set), plus hand-built canvases and files.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from mnist_net import canvas_to_input, image_from_bytes
from mnist_net.preprocess import centre_of_mass
from mnist_net.synth import SCHEMES, Stroke, draw_ink, paint


def _digit_two() -> np.ndarray:
    """A hand-made 28x28 '2' (uint8): arc on top, diagonal, flat base, 2-3 px strokes."""
    img = np.zeros((28, 28), np.float32)
    yy, xx = np.mgrid[0:28, 0:28]
    r = np.hypot(yy - 10.5, xx - 13.5)
    img[(r > 4.5) & (r < 7) & ((yy < 11) | (xx > 15))] = 1.0  # upper arc
    for t in np.linspace(0, 1, 60):  # diagonal from the arc's right end to the bottom left
        y, x = 12 + t * 10, 19 - t * 12
        img[int(y) : int(y) + 2, int(x) : int(x) + 3] = 1.0
    img[21:24, 7:22] = 1.0  # base
    return (img * 255).astype(np.uint8)


BOX = 20  # MNIST fits the ink into a 20x20 box...
CENTRE = 14.0  # ...and puts its centre of mass at pixel (14, 14): the training data's 14.00 +- 0.29
DIGIT = _digit_two()
RNG_SEED = 1234


def drawn(scheme="white_on_black", height=0.6, pen=1.2, x=0.3, y=0.4, canvas=280, seed=RNG_SEED):
    ink = draw_ink(DIGIT, Stroke(height, pen, x, y), canvas)
    return paint(ink, scheme, np.random.default_rng(seed))


def best_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two (784,) inputs, allowing the whole-pixel centring to differ by one pixel."""
    a2, b2 = a.reshape(28, 28), b.reshape(28, 28)
    return max(
        np.corrcoef(np.roll(a2, (dy, dx), axis=(0, 1)).ravel(), b2.ravel())[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def _bbox(img28: np.ndarray) -> tuple[int, int]:
    rows = np.nonzero((img28 > 0).any(axis=1))[0]
    cols = np.nonzero((img28 > 0).any(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# --- output contract and MNIST normalisation ------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    "height,pen,x,y", [(0.35, 0.5, 0.0, 0.0), (0.6, 1.2, 0.3, 0.8), (0.85, 2.5, 1.0, 1.0), (0.45, 2.0, 0.9, 0.1)]
)
def test_output_is_mnist_normalised(scheme, height, pen, x, y):
    out = canvas_to_input(drawn(scheme, height, pen, x, y))
    assert out is not None and out.shape == (784,) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    img = out.reshape(28, 28)
    com = centre_of_mass(img)
    assert abs(com[0] - CENTRE) <= 0.5 and abs(com[1] - CENTRE) <= 0.5, com
    h, w = _bbox(img)
    assert h <= BOX and w <= BOX
    assert h >= BOX - 1  # the '2' is taller than wide: its height fills the box


def test_normalised_input_comes_back_as_itself():
    # An MNIST-style 28x28 input (ink in a 20-high box, centred) is already normalised.
    once = canvas_to_input(drawn("white_on_black"))
    twice = canvas_to_input(once.reshape(28, 28))
    assert np.abs(twice - once).max() < 0.05


def test_real_mnist_digits_come_back_nearly_unchanged(mnist):
    X = mnist.X_test[:300]
    corr = [np.corrcoef(canvas_to_input(x.reshape(28, 28)), x / 255.0)[0, 1] for x in X]
    assert np.median(corr) > 0.97 and np.mean(corr) > 0.95


def test_wide_digit_keeps_aspect_ratio():
    canvas = np.zeros((200, 200), np.uint8)
    canvas[90:110, 20:180] = 255  # a dash 160 wide, 20 high: aspect 8
    img = canvas_to_input(canvas).reshape(28, 28)
    h, w = _bbox(img)
    assert w == BOX and h in (2, 3, 4)  # 20 / 8 = 2.5 px, plus the anti-aliasing fringe


# --- invariance ---------------------------------------------------------------------------


def test_translation_changes_output_only_slightly():
    a = canvas_to_input(drawn(x=0.05, y=0.1))
    b = canvas_to_input(drawn(x=0.9, y=0.7))
    c = canvas_to_input(drawn(x=0.5, y=0.5))
    assert np.abs(a - b).max() < 0.05 and np.abs(a - c).max() < 0.05


@pytest.mark.parametrize("height", [0.35, 0.5, 0.85])
def test_scale_changes_output_only_slightly(height):
    ref = canvas_to_input(drawn(height=0.65, pen=1.0))
    out = canvas_to_input(drawn(height=height, pen=1.0))
    assert best_corr(out, ref) > 0.95


def test_canvas_size_does_not_matter():
    ref = canvas_to_input(drawn(canvas=280))
    for size in (140, 400, 600):
        out = canvas_to_input(drawn(canvas=size))
        assert best_corr(out, ref) > 0.95


def test_colour_schemes_give_the_same_output():
    ref = canvas_to_input(drawn("white_on_black"))
    for scheme in ("black_on_white", "grayscale"):
        for seed in range(3):  # grayscale: random polarity and levels
            out = canvas_to_input(drawn(scheme, seed=seed))
            assert np.abs(out - ref).max() < 0.03, scheme
    for seed in range(8):  # transparent: the pen colour varies with the seed
        out = canvas_to_input(drawn("transparent", seed=seed))
        assert np.abs(out - ref).max() < 0.03


def test_photo_of_paper_matches_the_clean_drawing():
    ref = canvas_to_input(drawn("white_on_black"))
    for seed in range(5):
        out = canvas_to_input(drawn("photo", seed=seed))
        assert best_corr(out, ref) > 0.95


def test_rgba_with_opaque_background_and_coloured_ink():
    ink = draw_ink(DIGIT, Stroke(0.6, 1.2, 0.3, 0.4))
    background, pen = np.array([240, 230, 200.0]), np.array([20, 40, 160.0])
    rgb = background * (1 - ink[..., None]) + pen * ink[..., None]
    rgba = np.dstack([rgb, np.full(ink.shape, 255.0)]).round().astype(np.uint8)
    ref = canvas_to_input(drawn("white_on_black"))
    assert np.abs(canvas_to_input(rgba) - ref).max() < 0.05


def test_stray_speck_does_not_move_the_digit():
    canvas = drawn("white_on_black", x=0.2, y=0.2)
    ref = canvas_to_input(canvas)
    canvas = canvas.copy()
    canvas[270:272, 270:272, :3] = 255  # a 2x2 speck in the far corner
    assert np.abs(canvas_to_input(canvas) - ref).max() < 1e-6


# --- no digit -------------------------------------------------------------------------------


def _disc(radius, canvas=280, centre=(140, 140)):
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    return np.clip(radius + 0.5 - np.hypot(yy - centre[0], xx - centre[1]), 0, 1).astype(np.float32)


@pytest.mark.parametrize(
    "name",
    [
        "empty transparent",
        "all black",
        "all white",
        "mid grey",
        "faint noise",
        "tiny scratch",
        "single dot",
        "bigger dot",
        "blank paper photo",
        "1x1",
        "10000x10 blank",
    ],
)
def test_no_digit_gives_none(name):
    rng = np.random.default_rng(0)
    canvases = {
        "empty transparent": np.zeros((280, 280, 4), np.uint8),
        "all black": paint(np.zeros((280, 280), np.float32), "white_on_black", rng),
        "all white": paint(np.zeros((280, 280), np.float32), "black_on_white", rng),
        "mid grey": np.full((280, 280), 128, np.uint8),
        "faint noise": rng.integers(0, 12, (280, 280)).astype(np.uint8),
        "tiny scratch": paint(_disc(1.5), "white_on_black", rng),
        "single dot": paint(_disc(8), "transparent", rng),
        "bigger dot": paint(_disc(14, centre=(60, 200)), "black_on_white", rng),
        "blank paper photo": paint(np.zeros((280, 280), np.float32), "photo", rng),
        "1x1": np.full((1, 1, 4), 255, np.uint8),
        "10000x10 blank": np.zeros((10000, 10), np.uint8),
    }
    assert canvas_to_input(canvases[name]) is None


def test_a_dot_is_not_mistaken_for_a_small_zero():
    ring = np.clip(_disc(30) - _disc(18), 0, 1)  # a thick 0, 60 px across
    assert canvas_to_input(paint(ring, "white_on_black", np.random.default_rng(0))) is not None


# --- odd sizes, dtypes and values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a,
        lambda a: a.astype(np.float64) / 255,
        lambda a: a.astype(np.float32),
        lambda a: a.astype(np.float16) / 255,
        lambda a: a.astype(np.uint16) * 257,
        lambda a: a.astype(np.int64),
        lambda a: a > 127,
        lambda a: a[..., None],
        lambda a: np.dstack([a, a, a]),
        lambda a: np.dstack([a, a]),
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1, ::-1][::-1, ::-1],
        lambda a: a.tolist(),
    ],
)
def test_dtypes_and_layouts_work(convert):
    grey = drawn("grayscale", seed=0)
    out = canvas_to_input(convert(grey))
    ref = canvas_to_input(grey)
    assert out is not None and out.dtype == np.float32 and out.shape == (784,)
    assert np.corrcoef(out, ref)[0, 1] > 0.97


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros(784, np.uint8), "shape"),
        (np.zeros((28, 28, 5), np.uint8), "shape"),
        (np.zeros((2, 28, 28, 4), np.uint8), "shape"),
        (np.zeros((0, 28), np.uint8), "empty"),
        (np.zeros((28, 28), dtype=object), "dtype"),
        (np.full((28, 28), "a"), "dtype"),
        (np.zeros((28, 28), np.complex64), "dtype"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.full((28, 28), np.inf, np.float32), "NaN"),
        (np.full((28, 28), -1.0), "must be in the range"),
        (np.full((28, 28), 300.0), "must be in the range"),
        (np.full((28, 28), -5, np.int32), ">= 0"),
        (np.full((28, 28), 70000, np.int64), "16-bit"),
        (np.broadcast_to(np.uint8(0), (10000, 10000)), "too large"),
        (np.uint8(5), "shape"),
        ([[1, 2], [3]], "array"),
        (None, "shape"),
    ],
)
def test_unusable_input_raises_a_clear_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        canvas_to_input(image)


def test_nan_mixed_into_a_drawing_is_refused():
    img = drawn("grayscale").astype(np.float32)
    img[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        canvas_to_input(img)


def test_input_array_is_not_modified():
    canvas = drawn("transparent")
    before = canvas.copy()
    canvas_to_input(canvas)
    assert np.array_equal(canvas, before)


_DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
)
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(_DTYPES, _SHAPES, elements=None))
def test_random_arrays_never_crash(arr):
    try:
        out = canvas_to_input(arr)
    except ValueError as exc:
        assert str(exc)
        return
    if out is not None:
        assert out.shape == (784,) and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1


# --- uploads: image_from_bytes ------------------------------------------------------------------


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _digit_image(mode="L") -> Image.Image:
    return Image.fromarray(drawn("black_on_white")[..., 0]).convert(mode)


def test_png_and_jpeg_uploads_give_the_drawings_input():
    ref = canvas_to_input(drawn("black_on_white"))
    for fmt in ("PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF"):
        arr = image_from_bytes(_encode(_digit_image(), fmt))
        assert arr.dtype == np.uint8 and arr.shape[:2] == (280, 280)
        assert best_corr(canvas_to_input(arr), ref) > 0.95, fmt


def test_transparent_canvas_png_round_trip():
    canvas = drawn("transparent", seed=2)
    arr = image_from_bytes(_encode(Image.fromarray(canvas, "RGBA"), "PNG"))
    assert arr.shape == (280, 280, 4) and np.array_equal(arr, canvas)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"hello, this is not an image", "not an image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
        (b"%PDF-1.4\n1 0 obj\n", "not an image"),
        (b"PK\x03\x04" + bytes(100), "not an image"),
    ],
)
def test_not_an_image_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        image_from_bytes(data)


def test_wrong_argument_type_is_refused():
    with pytest.raises(ValueError, match="bytes"):
        image_from_bytes("picture.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_refused(fmt):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))  # no tiny encoding
    data = _encode(noisy, fmt)
    with pytest.raises(ValueError, match="damaged or truncated"):
        image_from_bytes(data[: len(data) // 2])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds almost no data: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [8000, 30000, 100000])  # ours, then Pillow's own bomb limits
def test_decompression_bomb_is_refused_before_decoding(side):
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ValueError, match="declares|enormous"):
        image_from_bytes(_png_header_only(side, side))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000  # nothing near side*side bytes was allocated


def test_smaller_pixel_limit_is_honoured():
    with pytest.raises(ValueError, match="declares 280x280"):
        image_from_bytes(_encode(_digit_image(), "PNG"), max_pixels=50_000)


def test_byte_limit_is_honoured():
    with pytest.raises(ValueError, match="too large"):
        image_from_bytes(_encode(_digit_image(), "PNG"), max_bytes=100)


def test_animated_gif_uses_the_first_frame():
    first = np.zeros((60, 60), np.uint8)
    first[10:50, 28:32] = 255  # a vertical bar
    second = np.zeros((60, 60), np.uint8)
    second[28:32, 10:50] = 255  # a horizontal bar
    frames = [Image.fromarray(f).convert("P") for f in (first, second)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    arr = image_from_bytes(buf.getvalue())
    grey = arr if arr.ndim == 2 else arr[..., 0]
    assert grey[30, 30] > 200 and grey[30, 12] < 50 and grey[12, 30] > 200


def test_sixteen_bit_png_is_scaled_not_clipped():
    arr16 = np.zeros((40, 40), np.uint16)
    arr16[:, 20:] = 32768
    arr16[:, 30:] = 65535
    data = _encode(Image.fromarray(arr16), "PNG")
    arr = image_from_bytes(data)
    assert arr.dtype == np.uint8 and arr.shape == (40, 40)
    assert arr[0, 0] == 0 and abs(int(arr[0, 25]) - 128) <= 1 and arr[0, 35] == 255


def test_cmyk_jpeg_is_converted():
    cmyk = Image.new("CMYK", (80, 80), (0, 0, 0, 0))  # white paper
    cmyk.paste((0, 0, 0, 255), (30, 10, 50, 70))  # black ink bar
    arr = image_from_bytes(_encode(cmyk, "JPEG", quality=95))
    assert arr.shape == (80, 80, 3)
    assert arr[40, 40].max() < 60 and arr[5, 5].min() > 200
    assert canvas_to_input(arr) is not None


def test_exif_rotation_is_applied():
    wide = np.zeros((20, 40), np.uint8)
    wide[:, :5] = 255  # a bright band at the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned, rotate 90 degrees clockwise to view
    arr = image_from_bytes(_encode(Image.fromarray(wide), "JPEG", exif=exif.tobytes(), quality=95))
    assert arr.shape == (40, 20)  # now tall
    assert arr[:5].mean() > 200 and arr[-5:].mean() < 50  # the left band is now at the top


def test_odd_sizes_decode_and_never_crash_preprocessing():
    for w, h in ((1, 1), (10000, 10), (10, 10000), (3, 700)):
        arr = image_from_bytes(_encode(Image.new("L", (w, h), 255), "PNG"))
        assert max(arr.shape) <= 1024 and arr.dtype == np.uint8
        assert canvas_to_input(arr) is None  # blank


def test_big_photo_is_shrunk():
    big = Image.fromarray(drawn("photo")).resize((3000, 3000))
    arr = image_from_bytes(_encode(big, "JPEG", quality=90))
    assert max(arr.shape[:2]) <= 1024
    assert best_corr(canvas_to_input(arr), canvas_to_input(drawn("photo"))) > 0.95


def test_palette_with_transparency_becomes_rgba():
    im = Image.fromarray(drawn("white_on_black")[..., 0]).convert("P")
    arr = image_from_bytes(_encode(im, "PNG", transparency=0))  # palette index 0 is transparent
    assert arr.ndim == 3 and arr.shape[2] == 4
    assert arr[..., 3].min() == 0 and arr[..., 3].max() == 255
    assert canvas_to_input(arr) is not None
