"""Hostile and broken model files: refused with a clear ModelFileError, no side effect, bounded memory.

Every code-running payload here is live: a control test unpickles each one with plain
``pickle.loads`` and sees it create its canary file, so a refusal below is a real refusal.
The property tests feed random bytes and random mutations of valid files to the loader:
it returns a model that predicts sensibly, or raises ModelFileError, and nothing else.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import stat
import struct
import subprocess
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_net import (
    MLP,
    ModelFileError,
    load_model,
    model_from_bytes,
    model_io,
    model_to_bytes,
    safe_pickle,
    save_model,
)
from mnist_net.model_io import model_to_dict

PROBE = np.random.default_rng(7).random((16, 784), dtype=np.float32)  # inputs in [0, 1]
PROBE[0], PROBE[1] = 0.0, 1.0


@pytest.fixture(scope="module")
def model(mnist):
    """A small real model: 784-16-10 relu, one epoch on 1,000 MNIST images."""
    m = MLP(hidden_sizes=(16,), activation="relu", epochs=1, n_train=1000, batch_size=50, seed=3)
    m.fit(mnist.X_train, mnist.y_train)
    m.metrics_ = {"test_accuracy": m.score(mnist.X_test[:500], mnist.y_test[:500])}
    m.info_ = {"source": "security tests"}
    return m


@pytest.fixture(scope="module")
def model_bytes(model) -> bytes:
    return model_to_bytes(model)


def assert_valid_model(m) -> None:
    """What 'a valid model' means to the app: it predicts finite probabilities that sum to 1."""
    assert isinstance(m, MLP)
    assert m.layer_sizes[0] == 784 and m.layer_sizes[-1] == 10
    p = m.predict_proba(PROBE)
    assert p.shape == (len(PROBE), 10) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert m.predict(PROBE).shape == (len(PROBE),)


def refused(data: bytes, match: str) -> ModelFileError:
    with pytest.raises(ModelFileError, match=match) as info:
        model_from_bytes(data)
    assert len(str(info.value)) < 400  # short enough to show to a user
    return info.value


# --- hand-built pickles (protocol 4 opcodes) -------------------------------------------------


def op_str(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b if len(b) < 256 else b"X" + struct.pack("<I", len(b)) + b


def op_global(module: str, name: str) -> bytes:
    return op_str(module) + op_str(name) + b"\x93"  # STACK_GLOBAL


def op_int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def op_bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def op_call(func: bytes, *args: bytes) -> bytes:
    return func + op_tuple(*args) + b"R"


def op_dtype(name: str, endian: str = "<") -> bytes:
    state = op_tuple(op_int(3), op_str(endian), b"NNN", op_int(-1), op_int(-1), op_int(0))
    return op_call(op_global("numpy", "dtype"), op_str(name), b"\x89", b"\x88") + state + b"b"


def op_array(shape: tuple, dtype: str, raw: bytes, module: str = "numpy._core.multiarray") -> bytes:
    """NumPy's own pickling: _reconstruct(ndarray, (0,), b'b') then BUILD with the real state."""
    empty = op_call(
        op_global(module, "_reconstruct"), op_global("numpy", "ndarray"), op_tuple(op_int(0)), op_bytes(b"b")
    )
    state = op_tuple(
        op_int(1),
        op_tuple(*(b"\x8a\x08" + struct.pack("<q", n) for n in shape)),
        op_dtype(dtype),
        b"\x89",
        op_bytes(raw),
    )
    return empty + state + b"b"


def pickle_of(body: bytes) -> bytes:
    return b"\x80\x04" + body + b"."


# --- payloads that run code when unpickled with plain pickle ---------------------------------


class Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def code_payloads(canary) -> dict[str, bytes]:
    touch = f"touch {canary}"
    py_touch = f"open({str(canary)!r}, 'w').close()"
    inner = pickle.dumps(Reduce(os.system, (touch,)))
    return {
        "os.system via __reduce__": pickle.dumps(Reduce(os.system, (touch,))),
        "os.system via GLOBAL opcode": b"\x80\x04cos\nsystem\n(V" + touch.encode() + b"\ntR.",
        "subprocess.call": pickle.dumps(Reduce(subprocess.call, (["touch", str(canary)],))),
        "subprocess.Popen": pickle.dumps(Reduce(subprocess.Popen, (["touch", str(canary)],))),
        "eval": pickle.dumps(Reduce(eval, (py_touch,))),
        "exec": pickle.dumps(Reduce(exec, (py_touch,))),
        "builtins.getattr(__import__('os'), 'system')": pickle_of(
            op_call(
                op_call(
                    op_global("builtins", "getattr"),
                    op_call(op_global("builtins", "__import__"), op_str("os")),
                    op_str("system"),
                ),
                op_str(touch),
            )
        ),
        "functools.partial(os.system)": pickle.dumps(Reduce(functools.partial(os.system, touch), ())),
        "pickle.loads of a nested pickle": pickle.dumps(Reduce(pickle.loads, (inner,))),
        "object-dtype array hiding a payload": pickle.dumps(np.array([Reduce(os.system, (touch,)), 1], dtype=object)),
        "payload inside an otherwise valid model dict": None,  # filled in by the test (needs a model)
    }


def test_every_payload_really_runs_code_under_plain_pickle(tmp_path, model):
    """Control: without the restricted loader each payload creates its canary."""
    for name, payload in code_payloads(tmp_path / "canary").items():
        if payload is None:
            payload = hostile_model_dict(model, tmp_path / "canary")
        canary = tmp_path / "canary"
        canary.unlink(missing_ok=True)
        result = pickle.loads(payload)
        if isinstance(result, subprocess.Popen):
            result.wait()
        assert canary.exists(), name


def hostile_model_dict(model, canary) -> bytes:
    d = model_to_dict(model)
    d["info"]["note"] = Reduce(os.system, (f"touch {canary}",))
    return pickle.dumps(d, protocol=4)


@pytest.mark.parametrize("name", list(code_payloads("x")))
def test_code_running_payload_is_refused_without_side_effect(name, tmp_path, model):
    canary = tmp_path / "canary"
    payload = code_payloads(canary)[name] or hostile_model_dict(model, canary)
    path = tmp_path / "upload.pkl"
    path.write_bytes(payload)
    with pytest.raises(ModelFileError, match=r"refused") as info:
        load_model(path)
    assert str(path) in str(info.value)
    refused(payload, r"refused")
    assert not canary.exists()


def test_refusal_names_the_forbidden_callable(tmp_path):
    payloads = code_payloads(tmp_path / "canary")
    refused(payloads["os.system via GLOBAL opcode"], r"refused to load os\.system")
    refused(payloads["os.system via __reduce__"], r"refused to load posix\.system")
    refused(payloads["subprocess.call"], r"refused to load subprocess\.call")
    refused(payloads["eval"], r"refused to load builtins\.eval")
    refused(payloads["exec"], r"refused to load builtins\.exec")
    refused(payloads["builtins.getattr(__import__('os'), 'system')"], r"refused to load builtins\.getattr")
    refused(payloads["object-dtype array hiding a payload"], r"refused array dtype 'O")


@pytest.mark.parametrize(
    "body, match",
    [
        # Opcodes that build objects from classes or outside registries are not needed by any model file.
        (op_global("numpy", "ndarray") + b")\x81", r"refused pickle operation NEWOBJ"),
        (b"\x82\x01", r"refused pickle operation EXT1"),
        (op_str("id") + b"Q", r"refused pickle operation BINPERSID"),
        (b"\x8f", r"refused pickle operation EMPTY_SET"),
        (b"(cos\nsystem\no", r"refused pickle operation OBJ"),
        # NumPy's scalar constructor reads object pointers from bytes: never allowed.
        (
            op_call(op_global("numpy._core.multiarray", "scalar"), op_dtype("O"), op_bytes(b"\0" * 8)),
            r"refused to load numpy\._core\.multiarray\.scalar",
        ),
        # The allowed NumPy names cannot be repurposed.
        (op_call(op_global("numpy", "ndarray"), op_tuple(op_int(10)), op_str("f8")), r"refused to call numpy\.ndarray"),
        (
            op_call(
                op_global("numpy._core.multiarray", "_reconstruct"),
                op_global("numpy", "dtype"),
                op_tuple(op_int(0)),
                op_bytes(b"b"),
            ),
            r"malformed array",
        ),
        (
            op_global("numpy", "dtype") + b"}" + op_str("_build") + op_global("builtins", "eval") + b"sb",
            r"refused to load builtins\.eval",
        ),
        (
            op_global("numpy", "dtype") + op_tuple(b"N", b"}" + op_str("_build") + op_int(1) + b"s") + b"b",
            r"refused an attempt to modify a loader object",
        ),
        (
            op_array((3,), "f8", b"\0" * 24)
            + op_tuple(op_int(1), op_tuple(op_int(3)), op_dtype("f8"), b"\x89", op_bytes(b"\0" * 24))
            + b"b",
            r"rebuilt twice",
        ),
        (op_array((2,), "V8", b"\0" * 16), r"refused array dtype 'V8'"),
        (op_array((2,), "M8", b"\0" * 16), r"refused array dtype 'M8'"),
        (op_array((2,), "f8,f8", b"\0" * 32), r"refused array dtype"),
    ],
    ids=[
        "NEWOBJ",
        "EXT1",
        "BINPERSID",
        "set",
        "OBJ",
        "numpy-scalar-object",
        "call-ndarray",
        "reconstruct-non-ndarray",
        "build-with-eval",
        "build-on-loader",
        "array-built-twice",
        "void-dtype",
        "datetime-dtype",
        "structured-dtype",
    ],
)
def test_reduce_and_opcode_tricks_are_refused(body, match):
    refused(pickle_of(body), match)


def test_tampering_attempts_leave_the_loader_working(model, model_bytes):
    """After hostile BUILDs on the loader's objects, NumPy and later loads are unaffected."""
    attempts = [
        op_dtype("f8") + op_tuple(op_int(3), op_str(">"), b"NNN", op_int(-1), op_int(-1), op_int(63)) + b"b",
        op_global("numpy", "dtype") + op_tuple(b"N", b"}" + op_str("__call__") + op_int(0) + b"s") + b"b",
        op_global("numpy._core.multiarray", "_reconstruct") + b"}" + op_str("x") + op_int(1) + b"sb",
    ]
    for body in attempts:
        with pytest.raises(ModelFileError):
            model_from_bytes(pickle_of(body))
    assert np.dtype("f8").str == "<f8" and not np.dtype("f8").hasobject
    np.testing.assert_array_equal(model_from_bytes(model_bytes).predict_proba(PROBE), model.predict_proba(PROBE))


# --- memory bombs ---------------------------------------------------------------------------


def peak_bytes_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "body, match",
    [
        (op_array((10**12,), "f8", b"\0" * 8), r"refused an array of shape"),
        (op_array((10**6, 10**6), "f8", b"\0" * 8), r"refused an array of 1000000000000 elements"),
        (op_array((10**6, 10**6), "u1", b"\0" * 8, module="numpy.core.multiarray"), r"1000000000000 elements"),
        (
            op_call(
                op_global("numpy._core.numeric", "_frombuffer"),
                op_bytes(b"\0" * 8),
                op_dtype("f8"),
                op_tuple(b"\x8a\x06" + (10**12).to_bytes(6, "little")),
                op_str("C"),
            ),
            r"refused an array of shape \(1000000000000,\)",
        ),
        (op_array((4,), "f8", b"\0" * 8), r"wrong size"),
        # A bytes header declaring 8 GB (or 10^12 bytes) followed by three bytes of data.
        (b"\x8e" + struct.pack("<Q", 8 * 10**9) + b"abc", r"not a readable model file"),
        (b"\x8e" + struct.pack("<Q", 10**12) + b"abc", r"not a readable model file"),
        (b"\x96" + struct.pack("<Q", 8 * 10**9) + b"abc", r"not a readable model file"),
        (b"\x8d" + struct.pack("<Q", 8 * 10**9) + b"abc", r"not a readable model file"),
        (b"\x95" + struct.pack("<Q", 10**12) + b"N", r"not a readable model file"),
    ],
    ids=[
        "reconstruct-1e12",
        "reconstruct-1e6x1e6",
        "old-numpy-path-1e6x1e6",
        "frombuffer-1e12",
        "short-data",
        "bytes8-8GB",
        "bytes8-1e12",
        "bytearray8-8GB",
        "unicode8-8GB",
        "frame-1e12",
    ],
)
def test_huge_declared_sizes_allocate_nothing(body, match):
    data = pickle_of(body)
    peak = peak_bytes_while(lambda: refused(data, match))
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_shared_references_cannot_explode(model):
    """A 'billion laughs' list: 15 levels, each holding the previous level 10 times (10^15 leaves).

    ~200 bytes; a walker that follows every reference never finishes (the first loader did not).
    """
    body = b"]\x94" + b"0"  # level 0: an empty list, memoized as 0, popped
    for level in range(1, 16):  # level k: MARK, ten references to level k-1, LIST, memoize as k, pop
        body += b"(" + (b"h" + bytes([level - 1])) * 10 + b"l\x94" + b"0"
    laugh = pickle_of(body + b"h" + bytes([15]))
    peak = peak_bytes_while(lambda: refused(laugh, r"more than 1000000 values"))
    assert peak < 5 * 2**20


def test_deep_nesting_is_refused(model):
    d = model_to_dict(model)
    d["info"]["deep"] = "SENTINEL"
    sentinel = b"X" + struct.pack("<I", 8) + b"SENTINEL"  # protocol 3 has no frames to fix up
    data = pickle.dumps(d, protocol=3)
    assert data.count(sentinel) == 1
    refused(data.replace(sentinel, b"]" * 100_000 + b"a" * 99_999), r"nesting too deep")


def test_too_many_operations_is_refused():
    refused(pickle_of(b"N" * 3_000_000 + b"\x8c\x01a"), r"more than 2000000 pickle operations")
    refused(pickle_of(b"}" * 2_100_000), r"more than 2000000 pickle operations")


def test_oversized_file_is_refused_before_reading_it_all(tmp_path, monkeypatch, model_bytes):
    monkeypatch.setattr(model_io, "MAX_FILE_BYTES", len(model_bytes) - 1)  # the file reader's limit
    monkeypatch.setattr(safe_pickle, "MAX_FILE_BYTES", len(model_bytes) - 1)  # the unpickler's
    path = tmp_path / "big.pkl"
    path.write_bytes(model_bytes)
    with pytest.raises(ModelFileError, match=r"above the \d+-byte limit"):
        load_model(path)
    refused(model_bytes, r"above the \d+-byte limit")


def test_devices_fifos_and_directories_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model("/dev/zero")  # endless: reading it would never stop
    fifo = tmp_path / "pipe.pkl"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        load_model(fifo)  # opening a FIFO with no writer must not hang
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(tmp_path)
    secret = tmp_path / "secret.pkl"
    secret.write_bytes(b"x")
    secret.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(ModelFileError, match="permission denied"):
            load_model(secret)
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)


# --- broken files and things that are not models ----------------------------------------------


def modified(model, edit) -> bytes:
    d = model_to_dict(model)
    edit(d)
    return pickle.dumps(d, protocol=4)


def test_wrong_shapes_between_layers_are_refused(model):
    def w2_wrong_inputs(d):
        d["params"]["W2"] = np.zeros((17, 10), np.float32)

    def b1_wrong(d):
        d["params"]["b1"] = np.zeros(15, np.float32)

    def w1_not_784(d):
        d["params"]["W1"] = np.zeros((783, 16), np.float32)

    def eleven_classes(d):
        d["params"]["W2"], d["params"]["b2"] = np.zeros((16, 11), np.float32), np.zeros(11, np.float32)

    def sizes_lie(d):
        d["layer_sizes"] = [784, 32, 10]

    def missing_b2(d):
        del d["params"]["b2"]

    def one_dim_weight(d):
        d["params"]["W1"] = np.zeros(784 * 16, np.float32)

    refused(modified(model, w2_wrong_inputs), r"W2 expects 17 inputs but layer 1 has 16 units")
    refused(modified(model, b1_wrong), r"W1 \(784, 16\) and b1 \(15,\) do not fit")
    refused(modified(model, w1_not_784), r"784 inputs to 10 classes")
    refused(modified(model, eleven_classes), r"784 inputs to 10 classes")
    refused(modified(model, sizes_lie), r"layer_sizes \[784, 32, 10\] do not match")
    refused(modified(model, missing_b2), r"parameters must be exactly")
    refused(modified(model, one_dim_weight), r"do not fit together")


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("W1", np.nan, "NaN or infinite"),
        ("b2", np.inf, "NaN or infinite"),
        ("W2", -np.inf, "NaN or infinite"),
        ("W1", 1e300, "NaN or infinite"),  # finite as float64, inf once converted to float32
    ],
)
def test_nan_inf_and_overflowing_weights_are_refused(model, key, value, match):
    def poison(d):
        arr = d["params"][key].astype(np.float64)
        arr.flat[3] = value
        d["params"][key] = arr

    refused(modified(model, poison), match)


def test_weights_that_would_overflow_the_logits_are_refused(model):
    """Finite weights can still overflow float32 logits; the naive model would predict NaN."""
    d = model_to_dict(model)
    d["params"]["W1"] = np.full((784, 16), 1e18, np.float32)
    d["params"]["W2"] = np.full((16, 10), 1e18, np.float32) * np.arange(1, 11, dtype=np.float32)
    naive = MLP(model.config)
    naive.params_ = d["params"]
    with np.errstate(all="ignore"):
        assert not np.all(np.isfinite(naive.predict_proba(PROBE)))  # control: the danger is real
    refused(pickle.dumps(d, protocol=4), r"weights are so large that predictions would overflow")


def test_largest_allowed_weights_still_predict_finite_probabilities(model):
    """The overflow bound is sound: weights just under it still give finite probabilities."""
    d = model_to_dict(model)
    d["params"]["W1"] = np.full((784, 16), 1e12, np.float32)
    d["params"]["W2"] = np.full((16, 10), 1e12, np.float32) * np.arange(1, 11, dtype=np.float32)
    assert model_io.logit_bound(d["params"], "relu") < model_io.MAX_LOGIT
    assert_valid_model(model_from_bytes(pickle.dumps(d, protocol=4)))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["config"].update(learning_rate="0.1; rm -rf /"), r"config learning_rate .* expected float"),
        (lambda d: d["config"].update(l2=float("nan")), r"config l2 is nan"),
        (lambda d: d["config"].update(batch_size=1.5), r"config batch_size is 1\.5, expected int"),
        (lambda d: d["config"].update(seed=-1), r"seed must be >= 0"),
        (lambda d: d["config"].update(optimizer="rmsprop"), r"invalid training config"),
        (lambda d: d["config"].update(augment="yes"), r"config augment"),
        (lambda d: d.update(config=[1, 2]), r"config must be a dictionary"),
        (lambda d: d.update(activation="tanh"), r"unknown activation 'tanh'"),
        (lambda d: d.update(history=[{"epoch": "1", "batch": 1, "batches_per_epoch": 2}]), r"history record 0"),
        (lambda d: d.update(history=[{"epoch": 1}]), r"history record 0 lacks"),
        (
            lambda d: d.update(history=[{"epoch": 1, "batch": 1, "batches_per_epoch": 1, "x": [1]}]),
            r"not a flat dictionary",
        ),
        (lambda d: d.update(metrics=[0.9]), r"metrics must be a dictionary"),
        (lambda d: d.update(data_hash=["x"]), r"data_hash must be a short string"),
        (lambda d: d.update(epochs_done=-3), r"epochs_done must be"),
        (lambda d: d.update(epochs_done=True), r"epochs_done must be"),
        (lambda d: d["optimizer_state"].update(m_W1=np.zeros((3, 3), np.float32)), r"m_W1' does not match"),
        (lambda d: d["optimizer_state"].update(t=np.array(-5)), r"non-negative integer"),
        (lambda d: d["optimizer_state"].update(v_b1=-np.ones(16, np.float32)), r"v_b1 holds invalid"),
        (lambda d: d["optimizer_state"].update(m_b1=np.full(16, np.nan, np.float32)), r"m_b1 holds invalid"),
        (lambda d: d["optimizer_state"].update({7: np.zeros(1)}), r"dictionary key of type int"),
        (lambda d: d["info"].update(big=10**30), r"integer too large"),
        (lambda d: d["info"].update(text="x" * 200_000), r"string of 200000 characters"),
        (lambda d: d["info"].update(raw=b"bytes"), r"value of type bytes"),
        (lambda d: d.update(kind="sklearn.MLPClassifier"), r"kind is 'sklearn\.MLPClassifier'"),
    ],
)
def test_invalid_fields_are_refused(model, edit, match):
    refused(modified(model, edit), match)


def test_a_pickle_inside_a_numeric_array_is_data_never_code(tmp_path, model):
    """Bytes that happen to be a pickle, stored as a uint8 array, are never unpickled."""
    canary = tmp_path / "canary"
    evil = pickle.dumps(Reduce(os.system, (f"touch {canary}",)))
    data = modified(model, lambda d: d["info"].update(blob=np.frombuffer(evil, np.uint8)))
    loaded = model_from_bytes(data)
    assert_valid_model(loaded)
    assert loaded.info_["blob"].dtype == np.uint8 and loaded.info_["blob"].tobytes() == evil
    assert not canary.exists()


def test_empty_truncated_and_random_files_are_refused(model_bytes, tmp_path):
    refused(b"", "the file is empty")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.pkl: the file is empty"):
        load_model(empty)
    for cut in (1, 2, 10, 100, len(model_bytes) // 2, len(model_bytes) - 1):
        refused(model_bytes[:cut], r"not a readable model file")
    rng = np.random.default_rng(0)
    for _ in range(50):
        refused(rng.bytes(int(rng.integers(1, 5000))), r".")


def test_a_zip_renamed_to_pkl_is_refused(model, model_bytes, tmp_path):
    path = tmp_path / "model.pkl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.pkl", model_bytes)
    with pytest.raises(ModelFileError, match=r"model\.pkl: refused: not a model file \(it is a zip archive\)"):
        load_model(path)
    npz = io.BytesIO()
    np.savez(npz, **model.params_)
    refused(npz.getvalue(), r"it is a zip archive")
    npy = io.BytesIO()
    np.save(npy, model.params_["W1"])
    refused(npy.getvalue(), r"does not start with a pickle header")


@pytest.mark.parametrize(
    "obj, match",
    [
        ([1, 2, 3], r"holds a list, not a model dict"),
        ("a string", r"holds a str"),
        (42, r"holds a int"),
        (np.zeros((784, 10), np.float32), r"holds a ndarray"),
        ({"weights": np.zeros(3)}, r"no format_version"),
        ({"format_version": "1"}, r"no format_version"),
        ({"format_version": 1}, r"layer_sizes must be"),
        ({1, 2}, r"refused pickle operation EMPTY_SET"),
    ],
)
def test_valid_pickles_of_non_models_are_refused(obj, match):
    refused(pickle.dumps(obj, protocol=4), match)


def test_a_model_from_a_future_format_version_is_refused(model):
    refused(
        modified(model, lambda d: d.update(format_version=3)),
        r"format 3 is newer than this program supports \(2\); upgrade mnist_net",
    )
    refused(modified(model, lambda d: d.update(format_version=0)), r"unknown model file format 0")
    refused(pickle.dumps(model_to_dict(model), protocol=2), r"unsupported pickle protocol 2")


def test_unsavable_models_are_refused_at_save_time_not_at_load_time(model, tmp_path):
    broken = MLP(model.config)
    broken.params_ = {k: v.copy() for k, v in model.params_.items()}
    broken.params_["W1"][0, 0] = np.nan  # e.g. a run that diverged
    with pytest.raises(ModelFileError, match="cannot be saved.*NaN"):
        save_model(broken, tmp_path / "m.pkl")
    assert list(tmp_path.iterdir()) == []


# --- files that must load -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_valid_files_load_in_every_supported_protocol_and_byte_order(model, protocol):
    d = model_to_dict(model)
    expected = model.predict_proba(PROBE)
    assert_valid_model(model_from_bytes(pickle.dumps(d, protocol=protocol)))
    np.testing.assert_array_equal(model_from_bytes(pickle.dumps(d, protocol=protocol)).predict_proba(PROBE), expected)
    swapped = dict(d, params={k: v.astype(v.dtype.newbyteorder(">")) for k, v in d["params"].items()})
    fortran = dict(d, params={k: np.asfortranarray(v) for k, v in d["params"].items()})
    for variant in (swapped, fortran):
        loaded = model_from_bytes(pickle.dumps(variant, protocol=protocol))
        np.testing.assert_array_equal(loaded.predict_proba(PROBE), expected)


def test_numpy_scalars_in_metrics_are_saved_as_plain_numbers(model, tmp_path):
    m = MLP(model.config)
    m.params_ = model.params_
    m.metrics_ = {"test_accuracy": np.float64(0.9), "n": np.int64(3)}
    m.info_ = {"sizes": (1, 2)}
    loaded = load_model(save_model(m, tmp_path / "m.pkl"))
    assert loaded.metrics_ == {"test_accuracy": 0.9, "n": 3} and type(loaded.metrics_["n"]) is int
    assert loaded.info_ == {"sizes": [1, 2]}


def notebook_forward(params: dict, x: np.ndarray) -> np.ndarray:
    """The seed notebook's forward_prop for one column vector x: (784, 1), written as it has it."""

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    def softmax(z):
        exps = np.exp(z - z.max())
        return exps / np.sum(exps)

    a1 = sigmoid(np.dot(params["w1"], x) + params["b1"])
    a2 = sigmoid(np.dot(params["w2"], a1) + params["b2"])
    return softmax(np.dot(params["w3"], a2) + params["b3"])


@pytest.fixture(scope="module")
def notebook_trained(mnist):
    """A real 784-128-64-10 sigmoid net, the notebook's architecture, trained briefly."""
    return MLP(hidden_sizes=(128, 64), activation="sigmoid", epochs=2, n_train=5000, batch_size=32, seed=5).fit(
        mnist.X_train, mnist.y_train
    )


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_notebook_pickle_predicts_like_the_notebook(mnist, notebook_trained, protocol, tmp_path):
    """Saved the notebook's way (dict of float64 weights (out, in), biases (out, 1)), it predicts the same."""
    trained = notebook_trained
    nb = {}
    for i in (1, 2, 3):
        nb[f"w{i}"] = trained.params_[f"W{i}"].T.astype(np.float64)
        nb[f"b{i}"] = trained.params_[f"b{i}"].astype(np.float64)[:, None]
    path = tmp_path / "mnist_model.pkl"
    with open(path, "wb") as file:  # as the notebook does it
        pickle.dump(nb, file, protocol=protocol)
    loaded = load_model(path)
    assert loaded.layer_sizes == [784, 128, 64, 10] and loaded.activation == "sigmoid"
    X = mnist.X_test[:1000].astype(np.float32) / 255
    expected = np.stack([notebook_forward(nb, x.reshape(784, 1).astype(np.float64))[:, 0] for x in X])
    got = loaded.predict_proba(X)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # float32 vs float64 may only differ on near-ties
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(loaded.predict(X)[clear], expected.argmax(axis=1)[clear])
    assert np.mean(loaded.predict(X) == mnist.y_test[:1000]) > 0.8  # a real, working model
    assert_valid_model(loaded)
    assert_valid_model(model_from_bytes(model_to_bytes(loaded)))  # and it can be re-saved our way


# --- property tests ---------------------------------------------------------------------------


def outcome(data: bytes) -> str:
    """Load ``data``; fail on anything but a valid model or a ModelFileError with a message."""
    try:
        loaded = model_from_bytes(data)
    except ModelFileError as e:
        assert str(e)
        return "refused"
    assert_valid_model(loaded)
    assert_valid_model(model_from_bytes(model_to_bytes(loaded)))  # anything that loads can be saved
    return "loaded"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=3000).map(lambda b: b"\x80\x04" + b),
        st.binary(max_size=3000).map(lambda b: b"\x80\x04\x95" + b),
    )
)
def test_random_bytes_are_refused_cleanly(data):
    outcome(data)


def _mutation_sites(data: bytes) -> list[int]:
    """Where a mutation hits structure rather than weight bytes: every opcode and its argument."""
    import pickletools

    return [pos for _, _, pos in pickletools.genops(data)]


MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 2**31),
    st.integers(0, 255),
    st.integers(0, 8),
    st.booleans(),
)


def mutate(data: bytes, sites: list[int], mutations) -> bytes:
    out = bytearray(data)
    for kind, where, value, offset, near_opcode in mutations:
        if not out:
            break
        pos = (sites[where % len(sites)] + offset if near_opcode else where) % len(out)
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "set":
            out[pos] = value
        elif kind == "insert":
            out[pos:pos] = bytes([value])
        elif kind == "delete":
            del out[pos : pos + 1 + offset]
        else:
            del out[pos:]
    return bytes(out)


@pytest.fixture(scope="module")
def valid_files(model):
    """Our format (protocols 3-5) and the notebook's, each with its structural mutation sites."""
    d = model_to_dict(model)
    rng = np.random.default_rng(1)
    nb = {f"w{i}": rng.standard_normal((o, n)) * 0.1 for i, (n, o) in enumerate([(784, 8), (8, 6), (6, 10)], 1)}
    nb.update({f"b{i}": np.zeros((o, 1)) for i, o in ((1, 8), (2, 6), (3, 10))})
    files = [pickle.dumps(d, protocol=p) for p in (3, 4, 5)] + [pickle.dumps(nb, protocol=4)]
    return [(f, _mutation_sites(f)) for f in files]


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 3), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_model_files_load_validly_or_are_refused(valid_files, which, mutations):
    data, sites = valid_files[which]
    outcome(mutate(data, sites, mutations))


def test_the_mutation_property_can_see_both_outcomes(valid_files):
    """Guard for the property above: mutations do produce both loadable and refused files."""
    rng = np.random.default_rng(2)
    seen = set()
    data, sites = valid_files[1]
    for _ in range(300):
        muts = [("set", int(rng.integers(2**31)), int(rng.integers(256)), 0, bool(rng.integers(2)))]
        seen.add(outcome(mutate(data, sites, muts)))
    assert seen == {"loaded", "refused"}
