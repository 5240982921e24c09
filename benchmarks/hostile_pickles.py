"""What loading hostile pickles costs: the worst cases we can build, before and after the cost bounds.

Builds each case (at 9 bytes, about 500 KB, 5 MB or the 200 MB file limit, whichever
makes it worst) and loads it with ``mnist_net.safe_pickle.safe_loads`` as it is in the
working tree ("after") and as it was at ``--baseline`` ("before", read with ``git show``).
Every load runs in a forked child with an address-space cap and a deadline, so a case
that would take the machine down is reported as a MemoryError or a timeout instead. For
each it reports the file's size, the outcome (loaded, or refused and why), the wall time
and the peak resident memory the load added (VmHWM after resetting it, minus VmRSS at the
start, from /proc/self). Then it times loading the real model (assets/default_model.pkl)
with both versions, interleaved, and reports the ratio.

Usage (from the repository root):
    python benchmarks/hostile_pickles.py                 # every case, before and after (~2 min)
    python benchmarks/hostile_pickles.py --quick         # no 200 MB cases (~1 min)
    python benchmarks/hostile_pickles.py --no-baseline   # the working tree only
    python benchmarks/hostile_pickles.py --baseline REV  # compare with another revision

Non-goals: asserting anything (tests/test_safe_pickle_cost.py does), other unpicklers.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import pickle
import resource
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_net import safe_pickle  # noqa: E402 - the repository root is put on the path just above

DEFAULT_BASELINE = "58e5e9a"  # the last commit before the cost bounds
DEFAULT_MODEL = ROOT / "assets" / "default_model.pkl"
HASH_MODULUS = 2**61 - 1  # ints equal modulo this share a hash
MB = 1024 * 1024


# --- building the cases (protocol 4 opcodes) ---------------------------------------------------


def pickle_of(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


def int8(n: int) -> bytes:
    return b"\x8a\x08" + n.to_bytes(8, "little", signed=True)


def int16(n: int) -> bytes:
    return b"\x8a\x10" + n.to_bytes(16, "little", signed=True)


def text(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def get(index: int) -> bytes:
    return b"h" + bytes([index])


def global_(module: str, name: str) -> bytes:
    return text(module) + text(name) + b"\x93"


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def shared_tuple(depth: int, breadth: int) -> bytes:
    """A tuple of ``breadth`` references to a tuple of ``breadth`` ... ``depth`` levels; memo 0..depth."""
    body = b")\x94"
    for level in range(1, depth + 1):
        body += b"0(" + get(level - 1) * breadth + b"t\x94"
    return body


def hidden_behind_a_frame(hidden: bytes) -> bytes:
    """``hidden`` run by the unpickler but, to a scan that ignores frames, the data of a bytes object."""
    length = len(hidden)  # the unpickler decodes its 4 bytes as UTF-8: make them ASCII
    while any(b >= 0x80 for b in struct.pack("<I", length)) or 0 < length - len(hidden) < 6:
        length += 1
    if length > len(hidden):  # pad with a bytes object pushed and popped
        hidden += b"B" + struct.pack("<I", length - len(hidden) - 6) + b"\0" * (length - len(hidden) - 6) + b"0"
    return b"\x80\x04" + frame(b"\x8c\x0aAAAAA") + b"BBBBBB" + struct.pack("<I", len(hidden)) + hidden + b"."


def arrays_from_one_buffer(count: int, elements: int) -> bytes:
    """``count`` float64 arrays of ``elements`` each, NumPy's way, all from one bytes object in the memo."""
    nbytes = 8 * elements
    body = b"\x8e" + struct.pack("<Q", nbytes) + b"\0" * nbytes + b"\x940"
    body += global_("numpy._core.multiarray", "_reconstruct") + b"\x940" + global_("numpy", "ndarray") + b"\x940"
    dtype = (
        global_("numpy", "dtype")
        + text("f8")
        + b"\x89\x88\x87R"
        + b"(K\x03"
        + text("<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    one = (
        get(1)
        + get(2)
        + b"K\x00\x85C\x01b\x87R"
        + b"(K\x01"
        + int8(elements)
        + b"\x85"
        + dtype
        + b"\x89"
        + get(0)
        + b"tb"
    )
    return pickle_of(body + b"(" + one * count + b"l")


def one_big_array(elements: int) -> bytes:
    """A real pickle of a dict holding one float64 array: the legitimate worst case."""
    return pickle.dumps({"W": np.zeros(elements)}, protocol=4)


def cases(quick: bool) -> list[tuple[str, object]]:
    """(name, a function building the file) for each case; the 200 MB ones only without ``quick``."""
    limit = safe_pickle.MAX_FILE_BYTES - 1000
    small_ints = [1 + k * HASH_MODULUS for k in range(5)]  # five ints below 2**63 with one hash
    items = [
        ("memo: LONG_BINPUT 2**31", lambda: pickle_of(b"Nr" + struct.pack("<I", 2**31))),
        ("memo: LONG_BINPUT 2**27", lambda: pickle_of(b"Nr" + struct.pack("<I", 2**27))),  # a 2 GB table
        ("memo: text PUT 2**40", lambda: pickle_of(b"Np%d\n" % 2**40)),
        (
            "dict: 30k tuple keys, one hash",
            lambda: pickle_of(
                b"".join(int8(i) + b"\x94" for i in small_ints)
                + b"00000}("
                + b"".join(
                    b"(" + b"".join(get(c) for c in combo) + b"tN"
                    for combo in itertools.islice(itertools.product(range(5), repeat=7), 30_000)
                )
                + b"u"
            ),
        ),
        (
            "dict: 30k int keys, one hash",
            lambda: pickle_of(b"}(" + b"".join(int16(1 + k * HASH_MODULUS) + b"N" for k in range(30_000)) + b"u"),
        ),
        ("dict key: tuple of 10^15 refs", lambda: pickle_of(shared_tuple(15, 10) + b"0}" + get(15) + b"Ns")),
        (
            "frame: hidden set, 30k ints",
            lambda: hidden_behind_a_frame(
                b"\x8f(" + b"".join(int16(1 + k * HASH_MODULUS) for k in range(30_000)) + b"\x900"
            ),
        ),
        ("frame: hidden memo 2**31", lambda: hidden_behind_a_frame(b"Nr" + struct.pack("<I", 2**31) + b"0")),
        ("shared: tuples for 800k values", lambda: pickle_of(shared_tuple(12, 3))),
        (
            "shared: lists for 10^15 values",
            lambda: pickle_of(b"]\x940" + b"".join(b"(" + get(k) * 10 + b"l\x940" for k in range(15)) + get(15)),
        ),
        ("arrays: 5 MB buffer x 100", lambda: arrays_from_one_buffer(100, 625_000)),
        ("2M EMPTY_DICT in a list", lambda: pickle_of(b"(" + b"}" * 1_999_000 + b"l")),
        ("999k nested lists", lambda: pickle_of(b"]" * 999_000 + b"a" * 998_999)),
        ("2M DUP", lambda: pickle_of(b"N" + b"2" * 1_999_000)),
        ("2M MARK", lambda: pickle_of(b"(" * 1_999_000 + b"N")),
        ("APPENDS of 999k None", lambda: pickle_of(b"](" + b"N" * 999_000 + b"e")),
        ("SETITEMS, 500k same key", lambda: pickle_of(b"}(" + text("k") + b"\x94N" + b"h\x00N" * 500_000 + b"u")),
        ("LONG text, 5 MB digits*", lambda: pickle_of(b"L" + b"9" * 5_000_000 + b"\n")),
        ("LONG4 of 5 MB", lambda: pickle_of(b"\x8b" + struct.pack("<i", 5_000_000) + b"\x01" * 5_000_000)),
        ("random bytes, 5 MB", lambda: b"\x80\x04" + os.urandom(5_000_000)),
    ]
    if not quick:
        items += [
            ("arrays: 160 MB buffer x 1000", lambda: arrays_from_one_buffer(1000, 20_000_000)),
            ("LONG4 at the file limit", lambda: pickle_of(b"\x8b" + struct.pack("<i", limit) + b"\x01" * limit)),
            (
                "string at the file limit",
                lambda: pickle_of(
                    b"\x8d" + struct.pack("<Q", limit) + b"a" * (limit - 4) + "\N{GRINNING FACE}".encode()
                ),
            ),
            ("GLOBAL name at the file limit", lambda: pickle_of(b"c" + b"m" * limit + b"\nname\n")),
            ("legit: a 160 MB float64 array", lambda: one_big_array(safe_pickle.MAX_ARRAY_ELEMENTS)),
        ]
    return items


# --- running one load in a capped child -------------------------------------------------------------


@dataclass
class Result:
    outcome: str  # "loaded <type>", "refused: <message>", "<Error>: <message>" or "timeout"
    seconds: float
    peak_mb: float | None  # resident memory the load added at its peak


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Make VmHWM the current RSS, so that it then measures this load only (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _load_and_measure(loader, data: bytes, memory_mb: int) -> dict:
    limit = _status_kb("VmSize") * 1024 + memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    exact = _reset_peak_rss()
    rss_before = _status_kb("VmRSS")
    start = time.perf_counter()
    try:
        value = loader(data)
        outcome = f"loaded {type(value).__name__}"
    except Exception as e:  # noqa: BLE001 - a benchmark reports whatever happened
        name = type(e).__name__
        outcome = f"refused: {str(e).removeprefix('refused ')}" if name == "ModelFileError" else f"{name}: {e}"
    seconds = time.perf_counter() - start
    peak_mb = (_status_kb("VmHWM") - rss_before) / 1024 if exact else None
    return {"outcome": outcome, "seconds": seconds, "peak_mb": peak_mb}


def run_in_child(loader, data: bytes, seconds: float, memory_mb: int) -> Result:
    """Load ``data`` in a forked child limited to ``memory_mb`` more address space and ``seconds``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, exit without running the parent's cleanup
        os.close(read_end)
        try:
            report = json.dumps(_load_and_measure(loader, data, memory_mb)).encode()
        except BaseException as e:  # noqa: BLE001 - e.g. MemoryError while reporting
            report = json.dumps({"outcome": f"{type(e).__name__} in the child", "seconds": 0, "peak_mb": None}).encode()
        os.write(write_end, report)
        os._exit(0)
    os.close(write_end)
    start = time.perf_counter()
    try:
        ready, _, _ = select.select([read_end], [], [], seconds)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return Result("timeout", seconds, None)
        raw = b"".join(iter(lambda: os.read(read_end, 65536), b""))
        if not raw:
            return Result("killed", time.perf_counter() - start, None)
        return Result(**json.loads(raw))
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def lifting_the_digit_limit(loader):
    """``loader`` run where the interpreter's limit on decimal digits is lifted, as a host application may."""

    def load(data):
        sys.set_int_max_str_digits(0)
        return loader(data)

    return load


# --- the two versions ---------------------------------------------------------------------------------


def baseline_module(revision: str):
    """``mnist_net/safe_pickle.py`` as it was at ``revision``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:mnist_net/safe_pickle.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "safe_pickle_baseline.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("safe_pickle_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_real_model(versions: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds to load the real model with each version, the versions taking turns."""
    data = DEFAULT_MODEL.read_bytes()
    times = {name: [] for name in versions}
    for _ in range(repeats):
        for name, module in versions.items():
            start = time.perf_counter()
            module.safe_loads(data)
            times[name].append(time.perf_counter() - start)
    return times


# --- the report ---------------------------------------------------------------------------------------


def size_text(n: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cell(result: Result, width: int = 52) -> str:
    peak = "    ?" if result.peak_mb is None else f"{result.peak_mb:5.0f}"
    outcome = result.outcome.replace("\n", " ")
    outcome = outcome if len(outcome) <= width else outcome[: width - 3] + "..."
    return f"{outcome:<{width}} {result.seconds:7.3f} s {peak} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the 'before' version")
    parser.add_argument("--quick", action="store_true", help="skip the 200 MB cases")
    parser.add_argument("--no-baseline", action="store_true", help="only the working tree's version")
    parser.add_argument("--seconds", type=float, default=20.0, help="deadline of each load")
    parser.add_argument("--memory-mb", type=int, default=3000, help="address space each load may add")
    parser.add_argument("--repeats", type=int, default=30, help="loads of the real model per version")
    args = parser.parse_args()

    versions = {"after": safe_pickle}
    if not args.no_baseline:
        versions["before"] = baseline_module(args.baseline)
    print(
        f"after: working tree; before: {'(skipped)' if args.no_baseline else args.baseline}; "
        f"each load in a child with {args.seconds:g} s and {args.memory_mb} MB more address space"
    )
    print("peak = resident memory the load added; * = with the interpreter's decimal digit limit lifted\n")
    header = f"{'case':<31} {'size':>9}  " + "  ".join(
        f"{name + ': outcome':<52} {'time':>9} {'peak':>8}" for name in versions
    )
    print(header)
    print("-" * len(header))
    for name, build in cases(args.quick):
        data = build()
        cells = []
        for module in versions.values():
            loader = module.safe_loads
            if name.endswith("*"):
                loader = lifting_the_digit_limit(loader)
            cells.append(cell(run_in_child(loader, data, args.seconds, args.memory_mb)))
        print(f"{name:<31} {size_text(len(data)):>9}  " + "  ".join(cells), flush=True)
        del data

    print(
        f"\nthe real model ({DEFAULT_MODEL.name}, {size_text(DEFAULT_MODEL.stat().st_size)}), "
        f"{args.repeats} loads per version, taking turns:"
    )
    for name, module in versions.items():
        result = run_in_child(module.safe_loads, DEFAULT_MODEL.read_bytes(), args.seconds, args.memory_mb)
        print(f"  {name:<7} peak {result.peak_mb:.0f} MB added" if result.peak_mb is not None else f"  {name}")
    times = time_real_model(versions, args.repeats)
    for name, values in times.items():
        print(f"  {name:<7} median {statistics.median(values) * 1000:6.1f} ms, best {min(values) * 1000:6.1f} ms")
    if "before" in times:
        ratio = statistics.median(times["after"]) / statistics.median(times["before"])
        best = min(times["after"]) / min(times["before"])
        print(f"  after / before: {ratio:.2f} (medians), {best:.2f} (best)")


if __name__ == "__main__":
    main()
