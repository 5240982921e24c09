"""Image files -> arrays, safely: ``image_from_bytes`` decodes an uploaded picture of a digit.

What decoding would cost (pixels, shape, memory, JPEG scans and segments, PNG chunks, TIFF
strips, GIF blocks) is checked from the file's headers and structure before any pixel is
decoded, JPEGs are decoded at reduced scale, and every failure is a ValueError with the
reason. EXIF rotation applied, first frame of an animation, 16-bit and CMYK converted. The
array then goes through ``preprocess.canvas_to_input`` like a drawing.

Non-goals: formats that run helpers (EPS, PDF), several frames, colour management.
Pure NumPy + Pillow; never imports streamlit.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from .preprocess import WORK_SIDE

UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # no EPS/PDF: they run helpers
MAX_UPLOAD_PIXELS = 50_000_000  # declared width x height above this is refused before decoding
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


# --- uploads --------------------------------------------------------------------------------
#
# A file's size says little about what decoding it costs: a 97 KB PNG can declare a 1 x 50,000,000 strip, a 2 KB WebP
# a 49 MP canvas (750 MB to decode), a 70 KB JPEG a thousand scans, each a full pass over the image. So, besides the
# declared pixel count (MAX_UPLOAD_PIXELS), what decoding would cost is read from the file's structure and headers
# *before* any pixel is decoded, and refused above the limits below. A photo of one digit needs none of that: it is
# shrunk to WORK_SIDE anyway.

# Strips: Pillow keeps a row pointer per row and the shrink a filter tap per pixel of the long side, so that PNG took
# 860 MB. An image longer than ASPECT_FREE_SIDE and more than MAX_ASPECT times longer than wide is no photo of a digit;
# shorter strips cost nothing and still decode. With MAX_UPLOAD_PIXELS this bounds the long side at 31,623 px.
MAX_ASPECT = 20
ASPECT_FREE_SIDE = 10_000
# Memory one decode may take, estimated before decoding by _decode_bytes. 256 MiB holds any JPEG up to
# MAX_UPLOAD_PIXELS but 4:4:4 progressive ones over ~39 MP (baseline JPEGs decode at 1/2-1/8 scale in a few MB), any RGB
# PNG up to MAX_UPLOAD_PIXELS, a 30 MP RGBA PNG or TIFF (a 6K screenshot is 20 MP), a 16 MP WebP. Each is far more
# than a photo of one digit needs.
MAX_DECODE_BYTES = 256 * 1024 * 1024
# libjpeg's default progressive script has 10 scans (6 for greyscale) and optimising encoders (mozjpeg) stay near
# that. Each scan is a pass over all the image's blocks (~1.5 ms per 12 MP here, however few bytes it has), so a
# file repeating scans costs minutes; 64 leaves ample room and bounds the worst case allowed here to about a second.
MAX_JPEG_SCANS = 64
# Pillow parses a JPEG's header segments and a PNG's chunks one by one in Python (2-5 us each): 20 MB of empty
# segments cost 12 s and 740 MB. A photo has a few dozen segments (a few hundred with a big XMP or ICC profile split
# into 64 KB pieces); libpng writes 8 KB IDAT chunks, ~2,600 for a 20 MB PNG.
MAX_JPEG_SEGMENTS = 1_000
MAX_PNG_CHUNKS = 10_000
# Junk bytes between a JPEG's header segments (e.g. padding) are skipped one at a time in Python by Pillow.
MAX_JPEG_GAP = 64 * 1024
# Pillow sets up each TIFF strip (or tile) in Python, ~15 us each: a 20 MB file can list 2.5 million (38 s, 720 MB).
# 32,768 allows a strip per row of the tallest image accepted (31,623 rows; writers use far fewer) for ~0.5 s.
MAX_TIFF_STRIPS = 32_768
MAX_TIFF_TAGS = 4_096  # a TIFF image has a few dozen tags; a BigTIFF can declare billions, each parsed in Python
# Numbers in one TIFF tag: Pillow unpacks them into Python ints (a 9M-entry colour map: 3.8 s, 240 MB). The largest
# real ones are 16-bit colour maps and transfer functions (3 x 65,536); text and byte tags (ICC, XMP) are not limited.
MAX_TIFF_VALUES = 262_144
# Before a GIF's first image, Pillow reads extension data sub-block by sub-block, and skips stray bytes one by one,
# in Python: a 20 MB file of comments took 4.5 s and 760 MB. A GIF has a few extensions there; a big XMP packet a
# few thousand sub-blocks.
MAX_GIF_BLOCKS = 10_000

# Bytes per pixel of Pillow's raster for the modes that take fewer than 4 (RGB is held as 4 bytes, like RGBA).
_RASTER_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# libwebp allocates two RGBA canvases when the file is opened and decodes into a frame buffer that Pillow copies:
# 12 bytes per pixel beyond Pillow's raster (measured: 15.3 in all, for 12-49 MP files).
_WEBP_EXTRA_BYTES = 12
# The shrunk image (at most max_side squared) as it becomes the returned array: 16-bit images go through float64.
_FINAL_ARRAY_BYTES = 16
_ORIENTATION = 0x0112  # the EXIF tag saying how the camera was held
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# A JPEG marker: 0xFF and a code that is not byte stuffing (00), a restart marker (D0-D7) or fill (FF). Within a
# scan's entropy-coded data only these end the scan, so searching for them skips the data as libjpeg does.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-SOF15; C4, C8 and CC are other markers
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_NO_LENGTH = frozenset({0x01, 0xD8})  # TEM and SOI stand alone; every other marker has a length
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_PREFIXES = (b"II*\0", b"MM\0*", b"II\0*", b"MM*\0", b"II+\0", b"MM\0+")  # those Pillow opens, BigTIFF too
_TIFF_STRIP_TAGS = frozenset({273, 279, 324, 325})  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts
_TIFF_BYTE_TYPES = frozenset({1, 2, 6, 7})  # BYTE, ASCII, SBYTE, UNDEFINED: kept as bytes, not unpacked


class _Refused(ValueError):
    """An upload refused on purpose; the message says why. image_from_bytes raises it as a plain ValueError."""


def _ceil_div(a: int, b: int) -> int:
    """a / b rounded up, for non-negative integers."""
    return -(-a // b)


def _check_dimensions(w: int, h: int, max_pixels: int) -> None:
    """Refuse an image with no pixels, more than ``max_pixels``, or the shape of a long thin strip (MAX_ASPECT)."""
    if w < 1 or h < 1:
        raise _Refused(f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise _Refused(
            f"the image declares {w}x{h} pixels, more than the limit of {max_pixels}; refused before decoding"
        )
    if max(w, h) > ASPECT_FREE_SIDE and max(w, h) > MAX_ASPECT * min(w, h):
        raise _Refused(
            f"the image is {w}x{h} pixels, a strip more than {MAX_ASPECT} times longer than it is "
            "wide, not a photo of a digit; refused before decoding (crop it to the digit)"
        )


def _decode_bytes(size: tuple[int, int], mode: str, fmt: str | None, max_side: int, coefficient_bytes: int = 0) -> int:
    """Estimated peak memory to decode an image of ``size`` (as decoded) in Pillow ``mode`` and shrink it.

    Pillow's raster; the shrink's working copies (its first pass, out_width x height, and for RGBA/LA a premultiplied
    copy of the whole raster); what the decoder holds besides (libjpeg's coefficient buffer for a multi-scan JPEG,
    ``coefficient_bytes``; libwebp's canvases; libtiff's strip, which may be the whole image); the final small array
    and its conversions. Checked against the peak RSS of 6-49 MP PNG, JPEG, WebP, TIFF, BMP and GIF files: from 3%
    below the real peak to 10% above it (up to 2x above for TIFFs, whose strips are usually small).
    """
    pixels = size[0] * size[1]
    raster = pixels * _RASTER_BYTES.get(mode, 4)
    shrink = min(1.0, max_side / max(size))
    working = int(raster * shrink) + (raster if mode in ("RGBA", "LA") else 0)
    if fmt == "WEBP":
        working += pixels * _WEBP_EXTRA_BYTES
    elif fmt == "TIFF":
        working += raster
    final = min(pixels, max_side * max_side) * _FINAL_ARRAY_BYTES
    return raster + working + coefficient_bytes + final


def _check_memory(needed: int, what: str) -> None:
    """Refuse a decode estimated to need more than MAX_DECODE_BYTES."""
    if needed > MAX_DECODE_BYTES:
        raise _Refused(
            f"decoding this {what} would take about {needed / 2**20:.0f} MB of memory, more than the "
            f"limit of {MAX_DECODE_BYTES / 2**20:.0f} MB; refused before decoding "
            "(send a smaller image, or a JPEG)"
        )


def _jpeg_coefficient_bytes(frame: bytes) -> int:
    """Size of libjpeg's whole-image coefficient buffer for a frame header (the body of an SOF segment).

    A progressive or multi-scan JPEG keeps 64 two-byte coefficients per 8x8 block of every component until its last
    scan, at full resolution whatever scale it is decoded at.
    """
    if len(frame) < 6:
        return 0
    height, width, count = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    sampling = [(frame[i] >> 4 or 1, frame[i] & 15 or 1) for i in range(7, min(len(frame), 6 + 3 * count), 3)]
    if not sampling:
        return 0
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(
        _ceil_div(_ceil_div(width * h, h_max), 8) * _ceil_div(_ceil_div(height * v, v_max), 8) for h, v in sampling
    )
    return blocks * 64 * 2


def _jpeg_coefficients(data: bytes) -> int:
    """Walk a JPEG's marker segments without decoding; refuse too many scans or segments.

    Segments are skipped by their length and scans' entropy-coded data up to the next marker, as libjpeg reads
    them, so the walk counts the scans libjpeg would decode (one regex search per segment, ~1 ms for a 10 MB photo).
    Returns the size of libjpeg's coefficient buffer if the file needs one (several scans), else 0.
    """
    segments = scans = coefficients = 0
    progressive = False
    pos = 2  # just after SOI
    while (found := _JPEG_MARKER.search(data, pos)) is not None:
        if scans == 0 and found.start() - pos > MAX_JPEG_GAP:  # after the first scan, the gaps are image data
            raise _Refused(f"the JPEG has {found.start() - pos} bytes of junk between its header segments; refused")
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _Refused(
                f"the JPEG has more than {MAX_JPEG_SEGMENTS} marker segments (a photo has a few dozen); "
                "refused before decoding"
            )
        code, body = data[found.start() + 1], found.end()
        if code == _JPEG_EOI:
            break
        if code in _JPEG_NO_LENGTH:
            pos = body
            continue
        length = int.from_bytes(data[body : body + 2], "big")  # counts its own two bytes
        if code in _JPEG_FRAMES and not coefficients:
            coefficients = _jpeg_coefficient_bytes(data[body + 2 : body + length])
            progressive = code in _JPEG_PROGRESSIVE
        elif code == _JPEG_SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _Refused(
                    f"the JPEG has more than {MAX_JPEG_SCANS} scans (a progressive JPEG has about 10), "
                    "and each takes a pass over the whole image; refused before decoding"
                )
        pos = body + max(length, 2)  # a bogus length below 2 must not stall the walk
    return coefficients if progressive or scans > 1 else 0


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG of more than MAX_PNG_CHUNKS chunks, counted by their lengths without decoding."""
    pos = len(_PNG_SIGNATURE)
    for _ in range(MAX_PNG_CHUNKS):
        if pos + 8 > len(data) or data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")  # length, type, data, CRC
    if pos + 8 <= len(data):
        raise _Refused(
            f"the PNG has more than {MAX_PNG_CHUNKS} chunks (a normal one has a few thousand at most); "
            "refused before decoding"
        )


def _check_tiff_ifd(data: bytes) -> None:
    """Refuse a TIFF whose first image has too many tags, strips or tiles, or numbers in one tag.

    Reads only the first IFD's entry count and each entry's tag, type and value count, as Pillow finds them.
    """
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"
    big = data[2] == 43  # BigTIFF: 8-byte counts and offsets
    count_size, entry_size, value_size = (8, 20, 8) if big else (2, 12, 4)
    ifd = int.from_bytes(data[8:16] if big else data[4:8], order)
    entries = int.from_bytes(data[ifd : ifd + count_size], order)
    if entries > MAX_TIFF_TAGS:
        raise _Refused(f"the TIFF declares {entries} tags (an image has a few dozen); refused before decoding")
    first = ifd + count_size
    for at in range(first, min(len(data), first + entries * entry_size) - entry_size + 1, entry_size):
        tag, kind = int.from_bytes(data[at : at + 2], order), int.from_bytes(data[at + 2 : at + 4], order)
        count = int.from_bytes(data[at + 4 : at + entry_size - value_size], order)
        if tag in _TIFF_STRIP_TAGS and count > MAX_TIFF_STRIPS:
            raise _Refused(
                f"the TIFF is split into {count} strips or tiles, more than {MAX_TIFF_STRIPS}; refused before decoding"
            )
        if kind not in _TIFF_BYTE_TYPES and count > MAX_TIFF_VALUES:
            raise _Refused(
                f"the TIFF's tag {tag} holds {count} numbers, more than {MAX_TIFF_VALUES}; refused before decoding"
            )


def _check_gif_blocks(data: bytes) -> None:
    """Refuse a GIF with more than MAX_GIF_BLOCKS sub-blocks (or stray bytes) before its first image."""
    if len(data) < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the header and the global colour table
    blocks = 0
    while pos < len(data) and data[pos] not in (0x2C, 0x3B):  # until the first image descriptor or the trailer
        blocks += 1
        if data[pos] != 0x21:  # not an extension: Pillow skips the byte
            pos += 1
        else:
            pos += 2  # introducer and label, then sub-blocks up to an empty one
            while pos < len(data) and data[pos]:
                blocks += 1
                pos += 1 + data[pos]
            pos += 1
        if blocks > MAX_GIF_BLOCKS:
            raise _Refused(
                f"the GIF has more than {MAX_GIF_BLOCKS} blocks of extension data before its image "
                "(a GIF has a few); refused before decoding"
            )


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from its first chunk (VP8X, VP8L or VP8), or None if it is no WebP this can read."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended format: 24-bit canvas width - 1 and height - 1
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit width - 1 and height - 1
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit width and height after the start code
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _check_structure(data: bytes, max_pixels: int, max_side: int) -> int:
    """The checks that must run before Pillow even opens the file, since opening alone can cost too much.

    Pillow parses JPEG header segments, PNG chunks, TIFF strips and GIF extensions in Python, and libwebp allocates
    its canvases on opening. Returns the JPEG coefficient buffer's size (see _jpeg_coefficients), 0 for others.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_coefficients(data)
    if data.startswith(_PNG_SIGNATURE):
        _check_png_chunks(data)
    elif data.startswith(_TIFF_PREFIXES):
        _check_tiff_ifd(data)
    elif data.startswith((b"GIF87a", b"GIF89a")):
        _check_gif_blocks(data)
    elif (size := _webp_size(data)) is not None:
        _check_dimensions(*size, max_pixels)
        _check_memory(_decode_bytes(size, "RGB", "WEBP", max_side), f"{size[0]}x{size[1]} WebP")
    return 0


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 = as stored). Metadata that cannot be read counts as 1: the pixels are intact,
    and Pillow's own exif_transpose can raise anything from a damaged block (struct.error re-writing it)."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - any damage to the metadata means "no rotation known"
        return 1
    return value if isinstance(value, int) else 1


def _shrink_upload(im: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the long side is at most ``max_side`` (BOX: each output pixel is the mean of those it covers).

    ``resize``, not ``thumbnail``: thumbnail first reduces by an integer factor, which Pillow cannot do to 16-bit
    images (a 6000x6000 16-bit PNG failed with "image has wrong mode").
    """
    w, h = im.size
    if max(w, h) <= max_side:
        return im
    f = max_side / max(w, h)
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX)


def _to_array(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image -> uint8 (H, W), (H, W, 3) or (H, W, 4)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 1.0 if im.mode == "F" and hi <= 1 else 255.0 if hi <= 255 else 65535.0
        return np.clip(np.round(arr / scale * 255), 0, 255).astype(np.uint8)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        im = im.convert("RGBA")
    elif im.mode in ("1", "L"):
        im = im.convert("L")
    else:
        im = im.convert("RGB")  # P, CMYK, YCbCr, ...
    return np.asarray(im, dtype=np.uint8).copy()


def _decode(im: Image.Image, coefficient_bytes: int, max_pixels: int, max_side: int) -> np.ndarray:
    """Check an opened image's declared cost, then decode its first frame, shrink it and turn it upright."""
    w, h = im.size
    _check_dimensions(w, h, max_pixels)
    im.seek(0)  # first frame of an animated GIF/WEBP/PNG/TIFF
    if im.format in ("JPEG", "MPO") and max(w, h) > max_side:
        # Decode at 1/2, 1/4 or 1/8 scale (libjpeg scales the DCT: faster, and a fraction of the memory), keeping
        # at least max_side on the long side for the BOX shrink.
        f = max_side / max(w, h)
        im.draft(im.mode, (max(1, math.ceil(w * f)), max(1, math.ceil(h * f))))
    _check_memory(_decode_bytes(im.size, im.mode, im.format, max_side, coefficient_bytes), f"{w}x{h} {im.format} image")
    im.load()
    method = _UPRIGHT.get(_orientation(im))  # read from the file: the shrunk copy has no TIFF tags
    small = _shrink_upload(im, max_side)
    return _to_array(small.transpose(method) if method is not None else small)


def _open_and_decode(data: bytes, max_pixels: int, max_side: int) -> np.ndarray:
    """Check the file's structure, open it and decode it; any failure is a ValueError (refusals are _Refused)."""
    coefficient_bytes = _check_structure(data, max_pixels, max_side)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)
        except UnidentifiedImageError:
            raise ValueError("not an image this app can read (use PNG, JPEG, GIF, BMP, WEBP or TIFF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("the image declares an enormous size (a decompression bomb?); refused") from None
        except MemoryError:
            raise ValueError("not enough memory to read the image header; refused") from None
        except Exception as exc:  # malformed headers raise all sorts
            raise ValueError(f"could not read the image header: {str(exc) or type(exc).__name__}") from None
        try:
            return _decode(im, coefficient_bytes, max_pixels, max_side)
        except _Refused:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("the image declares an enormous size (a decompression bomb?); refused") from None
        except MemoryError:
            raise ValueError("not enough memory to decode the image; refused") from None
        except Exception as exc:  # Pillow and its C decoders raise all sorts: OSError, SyntaxError, struct.error...
            raise ValueError(f"the image file is damaged or truncated: {str(exc) or type(exc).__name__}") from None
        finally:
            im.close()


def image_from_bytes(
    data: bytes, max_pixels: int = MAX_UPLOAD_PIXELS, max_side: int = WORK_SIDE, max_bytes: int = MAX_UPLOAD_BYTES
) -> np.ndarray:
    """Decode an uploaded image file safely -> uint8 (H, W), (H, W, 3) or (H, W, 4).

    Refuses, with a ValueError saying why (and never any other exception): empty or oversized files, anything that
    is not a PNG/JPEG/GIF/BMP/WEBP/TIFF image, damaged or truncated files, and, before decoding any pixel, files whose
    decoding would cost too much: a declared size over ``max_pixels``, long thin strips, an estimated memory need over
    MAX_DECODE_BYTES, JPEGs with too many scans or segments, PNGs with too many chunks, TIFFs with too many strips,
    GIFs with too many extension blocks.
    Uses the first frame of an animation, decodes JPEGs at reduced scale, applies EXIF rotation (ignoring EXIF it
    cannot read), converts 16-bit, palette and CMYK images, and shrinks the result so its long side is at most
    ``max_side``.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected the file's bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("the file is empty")
    if len(data) > max_bytes:
        raise ValueError(f"the file is too large ({len(data) / 1e6:.1f} MB); the limit is {max_bytes / 1e6:.0f} MB")
    try:
        return _open_and_decode(bytes(data), max_pixels, max_side)
    except _Refused as exc:  # callers get exactly ValueError, whatever refused the file
        raise ValueError(str(exc)) from None
