"""What unpickling a hostile file costs: every file is loaded or refused in bounded time and memory.

Most cases are a file whose loading, before ``safe_pickle`` bounded it, took gigabytes,
minutes or forever, or several times the file's size in memory, much of it inside
CPython's unpickler holding the GIL, so freezing every session of the server; a few pin
down refusals those bounds rely on (frames, array builders). Each runs in a forked child
with an address-space cap and a deadline (``tests/bounded.py``), so a regression fails
its test instead of taking the machine down. The property tests generate such files, and
files that must load.
"""

from __future__ import annotations

import itertools
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np
from bounded import run_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_net.safe_pickle import MAX_NODES, safe_loads

HASH_MODULUS = 2**61 - 1  # ints equal modulo this share a hash
SECONDS = 5.0  # generous: each refusal below takes milliseconds
MEMORY_MB = 300
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "default_model.pkl"


# --- building pickles by hand (protocol 4 opcodes) ----------------------------------------------


def pickle_of(body: bytes, protocol: int = 4) -> bytes:
    return b"\x80" + bytes([protocol]) + body + b"."


def int8(n: int) -> bytes:
    """LONG1 with 8 bytes: any int in [-2**63, 2**63)."""
    return b"\x8a\x08" + n.to_bytes(8, "little", signed=True)


def big_int(n: int, size: int = 16) -> bytes:
    return b"\x8a" + bytes([size]) + n.to_bytes(size, "little", signed=True)


def text(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw if len(raw) < 256 else b"X" + struct.pack("<I", len(raw)) + raw


def get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def global_(module: str, name: str) -> bytes:
    return text(module) + text(name) + b"\x93"


def frame(body: bytes, declared: int | None = None) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body) if declared is None else declared) + body


def colliding_ints(n: int) -> list[int]:
    """``n`` distinct ints with one hash (each needs 16 bytes)."""
    return [1 + k * HASH_MODULUS for k in range(n)]


def small_colliding_ints() -> list[int]:
    """The five non-negative ints below 2**63 with hash 1: each fits the 8 bytes a model file may use."""
    ints = [1 + k * HASH_MODULUS for k in range(5)]
    assert len({hash(i) for i in ints}) == 1 and max(ints) < 2**63
    return ints


def shared_tuple(depth: int, breadth: int = 10) -> bytes:
    """A tuple holding ``breadth`` references to one holding ``breadth`` ... (``depth`` levels, memo 0..depth)."""
    body = b")\x94"
    for level in range(1, depth + 1):
        body += b"0(" + get(level - 1) * breadth + b"t\x94"
    return body  # leaves the deepest tuple on the stack


def arrays_sharing_one_buffer(count: int, nbytes: int) -> bytes:
    """``count`` arrays built with NumPy's own opcodes, all from one bytes object fetched from the memo."""
    body = b"B" + struct.pack("<I", nbytes) + b"\0" * nbytes + b"\x940"  # memo 0: the buffer
    body += global_("numpy._core.multiarray", "_reconstruct") + b"\x940"  # memo 1
    body += global_("numpy", "ndarray") + b"\x940"  # memo 2
    dtype = global_("numpy", "dtype") + text("u1") + b"\x89\x88\x87R"
    dtype += b"(K\x03" + text("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    one_array = (
        get(1)
        + get(2)
        + b"K\x00\x85C\x01b\x87R"
        + b"(K\x01"
        + int8(nbytes)
        + b"\x85"
        + dtype
        + b"\x89"
        + get(0)
        + b"tb"
    )
    return pickle_of(body + b"(" + one_array * count + b"l")


# --- how a case must end ---------------------------------------------------------------------------


def assert_refused(data: bytes, match: str, seconds: float = SECONDS, memory_mb: int = MEMORY_MB, fn=safe_loads):
    """``fn(data)`` raises ModelFileError matching ``match`` in a child limited to ``seconds`` and ``memory_mb``."""
    outcome = run_bounded(fn, data, seconds=seconds, memory_mb=memory_mb)
    assert outcome.kind == "raised" and outcome.error_type == "ModelFileError", outcome
    assert re.search(match, outcome.message), outcome


def load_with_digit_limit_lifted(data: bytes):
    sys.set_int_max_str_digits(0)  # as a host application may do; parsing decimal ints is then quadratic
    return safe_loads(data)


# --- the hostile cases ---------------------------------------------------------------------------


def test_a_huge_memo_index_allocates_nothing():
    """9 bytes: LONG_BINPUT 2**31 made the unpickler's memo table 2**32 entries (32 GB)."""
    data = pickle_of(b"N" + b"r" + struct.pack("<I", 2**31))
    assert len(data) == 9
    assert_refused(data, r"refused memo index 2147483648")
    assert_refused(pickle_of(b"N" + b"r" + struct.pack("<I", 2**24)), r"refused memo index")  # 256 MB
    assert_refused(pickle_of(b"Np4294967295\n"), r"refused memo index")  # the text PUT
    assert_refused(pickle_of(b"N\x94" + b"r" + struct.pack("<I", 2)), r"refused memo index 2")


def test_tuple_keys_built_from_ints_that_share_a_hash_are_refused_before_hashing():
    """Half a megabyte: 30,000 tuple keys of 7 ints from one hash class; the dict took minutes."""
    ints = small_colliding_ints()
    head = b"".join(int8(i) + b"\x94" for i in ints) + b"0" * len(ints)  # memo 0..4, stack empty
    combos = itertools.islice(itertools.product(range(len(ints)), repeat=7), 30_000)
    keys = b"".join(b"(" + b"".join(get(c) for c in combo) + b"tN" for combo in combos)
    data = pickle_of(head + b"}(" + keys + b"u")
    assert 400_000 < len(data) < 600_000
    assert_refused(data, r"dictionary key of type tuple")


def test_int_keys_that_share_a_hash_are_refused():
    """30,000 ints equal modulo 2**61 - 1 as keys: quadratic time (tens of seconds) for 600 KB."""
    data = pickle_of(b"}(" + b"".join(big_int(i) + b"N" for i in colliding_ints(30_000)) + b"u")
    assert_refused(data, r"integer too large|dictionary key of type int")


def test_a_key_holding_shared_references_is_never_hashed():
    """Under 400 bytes: a tuple of 10 references to a tuple of 10 ... (15 levels) as a key: hashing never ends."""
    data = pickle_of(shared_tuple(15) + b"0}" + get(15) + b"Ns")
    assert len(data) < 400
    assert_refused(data, r"dictionary key of type tuple")


def test_shared_references_cost_time_in_proportion_to_the_file():
    """125 bytes of tuples sharing tuples stand for 800,000 values: walking and copying each took seconds."""
    data = pickle_of(shared_tuple(12, 3))
    assert len(data) < 130
    outcome = run_bounded(safe_loads, data, seconds=1.0, memory_mb=MEMORY_MB)
    assert outcome.kind == "returned" and outcome.message == "'tuple'", outcome
    loaded = safe_loads(data)
    assert loaded[0] is loaded[1] is loaded[2]  # shared as in the file, not copied 800,000 times
    assert_refused(pickle_of(shared_tuple(19, 2)), rf"more than {MAX_NODES} values", seconds=1.0)


def ascii_length(hidden: bytes) -> bytes:
    """``hidden`` padded (with bytes pushed and popped) so that its 4-byte length is ASCII, hence valid UTF-8."""
    length = len(hidden)
    while any(b >= 0x80 for b in struct.pack("<I", length)) or 0 < length - len(hidden) < 6:
        length += 1
    pad = length - len(hidden)
    return hidden + (b"B" + struct.pack("<I", pad - 6) + b"\0" * (pad - 6) + b"0" if pad else b"")


def hide_behind_a_frame(hidden: bytes) -> bytes:
    """A frame whose last operation, a string, runs past its end; the unpickler then reads the string
    from after the frame and runs ``hidden``, which the scan (reading on linearly) took for bytes data."""
    hidden = ascii_length(hidden)
    framed = b"\x8c\x0a" + b"AAAAA"  # SHORT_BINUNICODE of 10 bytes, 5 of them in the frame
    after = b"BBBBB" + b"B" + struct.pack("<I", len(hidden))  # the unpickler's string; for the scan, BINBYTES
    return b"\x80\x04" + frame(framed) + after + hidden + b"."


def test_operations_hidden_behind_a_frame_boundary_are_refused():
    """Without following frames the scan saw bytes data where the unpickler ran a set of colliding ints."""
    hidden_set = b"\x8f(" + b"".join(big_int(i) for i in colliding_ints(30_000)) + b"\x900"
    assert_refused(hide_behind_a_frame(hidden_set), r"runs past the end of its frame")
    hidden_memo = b"N" + b"r" + struct.pack("<I", 2**31) + b"0"
    assert_refused(hide_behind_a_frame(hidden_memo), r"runs past the end of its frame")


def test_a_frame_inside_a_frame_is_refused():
    assert_refused(b"\x80\x04" + frame(frame(b"N") + b"."), r"frame starts inside another frame")


def test_one_buffer_cannot_fill_many_arrays():
    """5 MB: one bytes object from the memo as the data of 100 arrays made 500 MB of arrays."""
    data = arrays_sharing_one_buffer(100, 5_000_000)
    assert_refused(data, r"more data than the file", memory_mb=100)


def test_huge_integers_are_refused_before_they_are_built():
    """A 40 MB LONG4 was decoded twice (scan and unpickler) before being refused."""
    data = pickle_of(b"\x8b" + struct.pack("<i", 40_000_000) + b"\x01" * 40_000_000)
    assert_refused(data, r"integer too large", memory_mb=50)


def test_huge_decimal_integers_are_refused_before_they_are_parsed():
    """A 1 MB protocol 0 LONG: a minute of quadratic parsing where the interpreter's digit limit is lifted."""
    data = pickle_of(b"L" + b"9" * 1_000_000 + b"\n")
    assert_refused(data, r"argument longer than 256 bytes", fn=load_with_digit_limit_lifted)


def test_huge_strings_are_refused_before_they_are_decoded():
    """40 MB of ASCII and one emoji: 4 bytes a character once decoded, twice (scan and unpickler)."""
    raw = b"a" * 40_000_000 + "\N{GRINNING FACE}".encode()
    assert_refused(
        pickle_of(b"\x8d" + struct.pack("<Q", len(raw)) + raw), r"refused a string of 40000004 bytes", memory_mb=50
    )
    assert_refused(pickle_of(b"V" + b"a" * 40_000_000 + b"\n"), r"refused a string of over", memory_mb=50)


def test_huge_names_of_globals_are_refused_before_they_are_decoded():
    assert_refused(pickle_of(b"c" + b"m" * 60_000_000 + b"\nname\n"), r"argument longer than 256 bytes", memory_mb=50)


def test_millions_of_containers_are_refused_before_they_are_built():
    """2 MB of EMPTY_DICT made 2 million dicts (hundreds of MB) before the count refused them."""
    data = pickle_of(b"(" + b"}" * (2 * MAX_NODES - 1000) + b"l")
    assert_refused(data, rf"more than {MAX_NODES} values", memory_mb=100)


def test_build_on_a_protocol_5_array_never_reaches_numpy():
    """Protocol 5 arrays come from ``_frombuffer`` whole; a BUILD on one used to call NumPy's own __setstate__."""
    dtype = global_("numpy", "dtype") + text("f8") + b"\x89\x88\x87R"
    array = (
        global_("numpy._core.numeric", "_frombuffer")
        + b"("
        + b"\x96"
        + struct.pack("<Q", 24)
        + b"\0" * 24
        + dtype
        + b"K\x03\x85"
        + text("C")
        + b"tR"
    )
    assert safe_loads(pickle_of(array)).shape == (3,)
    state = b"(K\x01" + b"K\x03\x85" + b"N\x89" + b"C\x18" + b"\0" * 24 + b"tb"
    assert_refused(pickle_of(array + state), r"rebuilt twice")


def test_the_real_model_loads_in_bounded_time_and_memory():
    outcome = run_bounded(safe_loads, DEFAULT_MODEL.read_bytes(), seconds=SECONDS, memory_mb=MEMORY_MB)
    assert outcome.kind == "returned" and outcome.message == "'dict'", outcome


# --- property: generated hostile pickles are refused (or loaded) cheaply ---------------------------


def memo_attack():
    opcode = st.sampled_from(["LONG_BINPUT", "LONG_BINGET", "PUT", "GET"])
    return st.tuples(opcode, st.integers(0, 2**32 - 1)).map(
        lambda a: pickle_of(
            {
                "LONG_BINPUT": b"N" + b"r" + struct.pack("<I", a[1]),
                "LONG_BINGET": b"N0" + b"j" + struct.pack("<I", a[1]),
                "PUT": b"N" + b"p%d\n" % a[1],
                "GET": b"N0" + b"g%d\n" % a[1],
            }[a[0]]
        )
    )


def dict_attack():
    """A dict of many keys: colliding ints (big or small), floats, tuples, or (valid) repeated strings."""

    def build(args):
        kind, n, batched = args
        if kind == "big ints":
            keys = [big_int(i) for i in colliding_ints(n)]
        elif kind == "small ints":
            keys = [int8(i) for i in small_colliding_ints()] * (n // 5 + 1)
        elif kind == "floats":
            keys = [b"G" + struct.pack(">d", 2.0 ** (61 * k % 1000)) for k in range(n)]
        elif kind == "tuples":
            keys = [
                b"(" + b"".join(int8(i) for i in combo) + b"t"
                for combo in itertools.islice(itertools.product(small_colliding_ints(), repeat=4), n)
            ]
        else:  # one str key again and again, from the memo: valid, and cheap
            keys = [text("key") + b"\x94"] + [get(0)] * (n - 1)
        keys = keys[:n]
        if batched:
            return pickle_of(b"}(" + b"".join(k + b"N" for k in keys) + b"u")
        return pickle_of(b"}" + b"".join(k + b"Ns" for k in keys))

    return st.tuples(
        st.sampled_from(["big ints", "small ints", "floats", "tuples", "strings"]),
        st.integers(1, 30_000),
        st.booleans(),
    ).map(build)


def shared_references_attack():
    """Tuples holding shared tuples, used as a dict key, a value, or alone."""

    def build(args):
        depth, breadth, use = args
        laugh = shared_tuple(depth, breadth)
        if use == "key":
            return pickle_of(laugh + b"0}" + get(depth) + b"Ns")
        if use == "value":
            return pickle_of(laugh + b"0}" + text("k") + get(depth) + b"s")
        return pickle_of(laugh)

    return st.tuples(st.integers(1, 20), st.integers(2, 12), st.sampled_from(["key", "value", "alone"])).map(build)


def nesting_attack():
    def build(args):
        depth, container = args
        if container == "list":
            return pickle_of(b"]" * depth + b"a" * (depth - 1))
        if container == "tuple":
            return pickle_of(b"N" + b"\x85" * depth)
        return pickle_of(b"}" + (text("k") + b"}") * (depth - 1) + b"s" * (depth - 1))

    return st.tuples(st.integers(1, 200_000), st.sampled_from(["list", "tuple", "dict"])).map(build)


def buffer_attack():
    return st.tuples(st.integers(1, 200), st.integers(1, 1_000_000)).map(lambda a: arrays_sharing_one_buffer(*a))


def stack_attack():
    """Runs of DUP, MARK, POP or APPENDS onto a huge list."""
    return st.tuples(st.sampled_from([b"2", b"(", b"N0", b"N"]), st.integers(1, 500_000)).map(
        lambda a: pickle_of(b"]" + b"(" + b"N" + a[0] * a[1] + b"e") if a[0] == b"N" else pickle_of(b"N" + a[0] * a[1])
    )


def hidden_attack(attacks):
    """Any attack's operations hidden behind a frame boundary, or framed with a wrong length."""

    def build(args):
        data, trick, delta = args
        if trick == "hide":
            return hide_behind_a_frame(data[2:-1])
        return data[:2] + frame(data[2:], declared=max(0, len(data) - 2 + delta))

    return st.tuples(attacks, st.sampled_from(["hide", "frame"]), st.integers(-3, 3)).map(build)


ATTACKS = st.one_of(
    memo_attack(), dict_attack(), shared_references_attack(), nesting_attack(), buffer_attack(), stack_attack()
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(ATTACKS, hidden_attack(ATTACKS)))
def test_generated_hostile_pickles_cost_little(data):
    outcome = run_bounded(safe_loads, data, seconds=SECONDS, memory_mb=MEMORY_MB)
    assert outcome.kind in ("returned", "raised"), outcome
    if outcome.kind == "raised":
        assert outcome.error_type == "ModelFileError" and "too much memory" not in outcome.message, outcome


# --- property: real pickles of plain data still load, in every supported protocol ----------------

KEYS = st.text(max_size=20)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=100)
)
ARRAYS = st.builds(
    lambda shape, dtype, seed: np.random.default_rng(seed).random(shape).astype(dtype),
    st.lists(st.integers(0, 5), max_size=3).map(tuple),
    st.sampled_from(["f4", "f8", "i4", "u1", "i8"]),
    st.integers(0, 2**32 - 1),
)
PLAIN = st.recursive(
    st.one_of(SCALARS, ARRAYS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.lists(inner, max_size=4).map(tuple), st.dictionaries(KEYS, inner, max_size=6)
    ),
    max_leaves=40,
)


def assert_same(loaded, original) -> None:
    if isinstance(original, np.ndarray):
        assert type(loaded) is np.ndarray and loaded.dtype == original.dtype
        np.testing.assert_array_equal(loaded, original)
    elif isinstance(original, dict):
        assert type(loaded) is dict and list(loaded) == list(original)
        for key in original:
            assert_same(loaded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert type(loaded) is type(original) and len(loaded) == len(original)
        for a, b in zip(loaded, original):
            assert_same(a, b)
    else:
        assert type(loaded) is type(original) and loaded == original


@settings(max_examples=100, deadline=None)
@given(PLAIN, st.sampled_from([3, 4, 5]), st.booleans())
def test_pickles_of_plain_data_load_unchanged(value, protocol, fortran):
    if fortran and isinstance(value, np.ndarray):
        value = np.asfortranarray(value)
    assert_same(safe_loads(pickle.dumps({"value": value}, protocol=protocol)), {"value": value})


def test_large_arrays_written_outside_frames_load():
    """Protocol 4 and 5 write big buffers between frames; reading them must not be mistaken for a frame overrun."""
    value = {"W": np.arange(300_000, dtype=np.float32), "b": [np.ones(10)] * 2, "name": "x" * 70_000}
    for protocol in (3, 4, 5):
        assert_same(safe_loads(pickle.dumps(value, protocol=protocol)), value)
