"""Cost of the upload and MNIST-loading guards: legitimate inputs before/after, and how fast hostile ones are refused.

Times ``image_from_bytes`` on a 12 MP JPEG photo (4000x3000, quality 90, baseline and progressive) and a 280x280
PNG of a drawn digit, and ``load_mnist`` on the real files. With ``--baseline DIR`` (a folder holding another
version's ``mnist_net`` package) both versions run in this process, taking turns call by call, so a busy spell on
this shared machine hits them alike; the medians and their ratio (this version / baseline) are printed. Then each
hostile case of tests/test_hostile_images.py's kind is built and refused by this version, with its time.

Usage (from the repository root):
    mkdir -p /tmp/baseline && git archive main mnist_net | tar -x -C /tmp/baseline
    MNIST_DIR=../shared/mnist python benchmarks/hostile_uploads.py --baseline /tmp/baseline --rounds 15

Non-goals: memory figures (peak RSS needs a process per case: see the tests' bounded runs), asserting timings.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import os
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def import_version(folder: Path):
    """Import the ``mnist_net`` package found in ``folder`` and unregister it, so another version can be imported.

    Loaded from its files by location (no sys.path edits), then removed from ``sys.modules``.
    """

    def forget() -> None:
        for name in [m for m in sys.modules if m == "mnist_net" or m.startswith("mnist_net.")]:
            del sys.modules[name]

    forget()
    package_dir = folder / "mnist_net"
    spec = importlib.util.spec_from_file_location(
        "mnist_net", package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    try:
        package = importlib.util.module_from_spec(spec)
        sys.modules["mnist_net"] = package
        spec.loader.exec_module(package)
        # image_from_bytes moved from preprocess to uploads; a baseline may have it in either.
        uploads = (package_dir / "uploads.py").exists()
        modules = {
            "uploads": importlib.import_module("mnist_net.uploads" if uploads else "mnist_net.preprocess"),
            "data": importlib.import_module("mnist_net.data"),
        }
        assert Path(package.__file__).resolve().is_relative_to(folder.resolve()), package.__file__
    finally:
        forget()
    return modules


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(width: int, height: int) -> Image.Image:
    """Smooth colour variation with fine noise: compresses like a phone photo (~2 MB at quality 90 for 12 MP)."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (height // 100, width // 100, 3), dtype=np.uint8))
    smooth = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR), np.int16)
    grain = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def drawn_digit() -> Image.Image:
    """A 280x280 canvas with a thick white 7 on black, as the draw page produces."""
    canvas = np.zeros((280, 280), np.uint8)
    canvas[60:80, 70:210] = 255
    for row in range(80, 230):
        col = 210 - (row - 80) * 80 // 150
        canvas[row, col - 12 : col + 12] = 255
    return Image.fromarray(canvas)


def legit_uploads() -> dict[str, bytes]:
    big = photo(4000, 3000)
    return {
        "12 MP JPEG (baseline)": encode(big, "JPEG", quality=90),
        "12 MP JPEG (progressive)": encode(big, "JPEG", quality=90, progressive=True),
        "280x280 PNG": encode(drawn_digit(), "PNG"),
    }


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def hostile_uploads() -> dict[str, bytes]:
    """The issue's hostile files, small versions of each kind (refusal time does not depend on their size)."""
    z = zlib.compressobj(6)
    idat = b"".join(z.compress(b"\0\xff" * 500_000) for _ in range(100)) + z.flush()
    strip = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 50_000_000, 8, 0, 0, 0, 0))
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )
    prog = encode(Image.new("L", (4000, 3000), 200), "JPEG", progressive=True)
    second_scan = [i for i in range(len(prog) - 1) if prog[i : i + 2] == b"\xff\xda"][1]
    end = prog.index(b"\xff\xc4", second_scan)  # the next scan's Huffman table
    scans = prog[:end] + prog[second_scan:end] * 20_000 + prog[end:]
    small = encode(Image.new("L", (64, 64), 200), "JPEG")
    png = encode(Image.new("L", (64, 64), 200), "PNG")
    at = png.index(b"IDAT") - 4
    gif = encode(Image.new("P", (64, 64), 1), "GIF")
    gif_at = 13 + 3 * 2 ** ((gif[10] & 7) + 1)
    return {
        "1x50,000,000 PNG": strip,
        "JPEG with 20,000 scans": scans,
        "JPEG with 5M empty segments": small[:2] + b"\xff\xe1\x00\x02" * 5_000_000 + small[2:],
        "PNG with 1.6M chunks": png[:at] + png_chunk(b"teSt", b"") * 1_600_000 + png[at:],
        "TIFF with 2.5M strips": tiff_with_strips(2_500_000),
        "GIF with 19 MB of comments": gif[:gif_at] + b"\x21\xfe\x01A\x00" * 3_800_000 + gif[gif_at:],
    }


def tiff_with_strips(strips: int) -> bytes:
    """A 64x64 greyscale TIFF listing ``strips`` one-row strips, all pointing at the same pixels."""
    pixels = bytes(64 * 64)
    counts_at = 8 + len(pixels) + 4 * strips
    entries = [
        (256, 3, 1, 64),
        (257, 3, 1, 64),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, strips, 8 + len(pixels)),
        (277, 3, 1, 1),
        (278, 3, 1, 1),
        (279, 4, strips, counts_at),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    return (
        b"II*\0"
        + struct.pack("<I", counts_at + 4 * strips)
        + pixels
        + struct.pack("<I", 8) * strips
        + struct.pack("<I", 64) * strips
        + ifd
    )


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(versions: dict, cases: dict[str, tuple], rounds: int) -> None:
    """Time every case under every version, taking turns; print medians and the ratio to the baseline."""
    times = {(case, v): [] for case in cases for v in versions}
    for _ in range(rounds):
        for case, (module, fn, args) in cases.items():
            for v, modules in versions.items():
                times[case, v].append(timed(getattr(modules[module], fn), *args))
    for case in cases:
        medians = {v: statistics.median(times[case, v]) for v in versions}
        line = "  ".join(f"{v} {1000 * m:8.1f} ms" for v, m in medians.items())
        ratio = f"  ratio {medians['this'] / medians['baseline']:.3f}" if "baseline" in medians else ""
        print(f"{case:28} {line}{ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="folder holding another version's mnist_net package")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    versions = {}
    if args.baseline:
        versions["baseline"] = import_version(args.baseline)
    versions["this"] = import_version(ROOT)
    cases = {name: ("uploads", "image_from_bytes", (data,)) for name, data in legit_uploads().items()}
    mnist_dir = os.environ.get("MNIST_DIR")
    if mnist_dir:
        cases["load_mnist"] = ("data", "load_mnist", (mnist_dir, False, False))
    else:
        print("(MNIST_DIR not set: load_mnist not timed)")
    print(f"median of {args.rounds} interleaved runs:")
    compare(versions, cases, args.rounds)
    print("\nhostile uploads, this version:")
    for name, data in hostile_uploads().items():
        start = time.perf_counter()
        try:
            versions["this"]["uploads"].image_from_bytes(data)
            result = "decoded (!)"
        except ValueError as e:
            result = f"ValueError: {str(e)[:70]}"
        print(f"{name:28} {len(data) / 1e6:6.2f} MB  {1000 * (time.perf_counter() - start):7.1f} ms  {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
