"""Model files: a pickled plain dict, written atomically, loaded without running code.

Format (``format_version`` 1)::

    {"format_version": 1, "kind": "mnist_net.MLP", "layer_sizes": [784, 128, 64, 10],
     "activation": "sigmoid", "params": {"W1": (784, 128) float32, "b1": (128,), ...},
     "config": TrainConfig as a dict, "history": [progress dicts], "metrics": {...},
     "data_hash": str, "optimizer_state": {name: array}, "epochs_done": int, "info": {...}}

Model files come from strangers (uploads), so loading trusts nothing in them:

1. Size: at most ``MAX_FILE_BYTES``, read with a bounded read from a regular file.
2. Opcodes: the pickle is scanned *before* it is unpickled; only opcodes for plain data,
   globals and arrays are admitted, at most ``MAX_OPCODES`` of them, and every declared
   length must fit in the file (so a header claiming 10^12 bytes allocates nothing).
3. Globals: the only names it resolves are NumPy's array and dtype reconstructors, and
   they resolve to our own builders, not to NumPy: numeric dtypes only, array sizes
   checked against their data, nothing callable that the file could misuse.
4. Shape of the data: the result is rebuilt as plain dicts, lists, numbers, strings and
   numeric arrays (bounded depth and total size, so shared references cannot explode),
   then checked field by field: shapes chain 784 -> ... -> 10, weights finite and small
   enough that no input in [0, 1] can overflow the logits, config values of the right
   types, optimizer state matching the weights.

The original notebook's pickle (``w1, b1, ..., w3, b3``, weights ``(out, in)``, biases
``(out, 1)``, float64, sigmoid) is recognised and converted. Non-goals: other model
kinds, signatures (files are validated, not authenticated), pickle protocols below 3.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import pickle
import pickletools
import re
import reprlib
import stat
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from .config import ACTIVATIONS, TrainConfig
from .network import MLP
from .train import Progress

FORMAT_VERSION = 1
KIND = "mnist_net.MLP"
MAX_FILE_BYTES = 200 * 1024 * 1024  # far above any sensible MLP; bounds memory on load
MAX_OPCODES = 2_000_000  # a real file has a few thousand; bounds the objects a file can make
MAX_NODES = 1_000_000  # values in the data, counting each shared reference again
MAX_DEPTH = 32
MAX_STRING = 100_000  # characters; real strings are names, dates and command lines
MAX_INT = 2**63
MAX_ARRAY_ELEMENTS = 20_000_000
MAX_UNITS = 4096
MAX_LAYERS = 12
MAX_EPOCHS_DONE = 1_000_000
MAX_LOGIT = 1e30  # float32 overflows at 3.4e38; a trained MLP's logits are below 1e3
STALE_TEMP_SECONDS = 60  # a dead writer's temp file older than this is removed on the next save
_NUMERIC_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


def _short(value) -> str:
    """A bounded repr for error messages: values from a hostile file can be huge."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = 60
    r.maxlist = r.maxdict = r.maxtuple = 4
    r.maxlevel = 2
    return r.repr(value)


class ModelFileError(ValueError):
    """A model file could not be loaded: corrupt, hostile, or not a model. The message says why."""


# --- step 2: scan the opcodes before unpickling ------------------------------------------

_ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
})


_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def _scan_opcodes(data: bytes) -> None:
    """Refuse unknown or unneeded opcodes, too many opcodes, and lengths beyond the data.

    Like ``pickletools.genops``, but an opcode is checked before its argument is parsed.
    """
    stream = io.BytesIO(data)
    try:
        for _ in range(MAX_OPCODES):
            opcode = _OPCODES.get(stream.read(1))
            if opcode is None:
                raise ModelFileError("not a readable model file (unknown pickle operation or truncated)")
            if opcode.name not in _ALLOWED_OPCODES:
                raise ModelFileError(f"refused pickle operation {opcode.name}: model files may only "
                                     "contain plain data and numeric arrays")
            if opcode.name == "GLOBAL":  # pickletools would escape-decode these two lines, pickle does not
                arg = [stream.readline() for _ in range(2)]
                if not all(line.endswith(b"\n") for line in arg):
                    raise ModelFileError("not a readable model file (truncated)")
            else:
                arg = opcode.arg.reader(stream) if opcode.arg is not None else None
            if opcode.name == "PROTO" and not 3 <= arg <= 5:
                raise ModelFileError(f"unsupported pickle protocol {arg} (3 to 5 are read)")
            if opcode.name == "STOP":
                return
    except ModelFileError:
        raise
    except Exception as e:  # the argument readers report short data as they parse
        raise ModelFileError(f"not a readable model file ({_describe(e)})") from None
    raise ModelFileError(f"not a model file: more than {MAX_OPCODES} pickle operations")


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:200]


# --- step 3: the only globals a file may name ------------------------------------------------
# Each resolves to an object of ours that cannot be repurposed: no attribute can be set on
# it (BUILD on it is refused) and it builds nothing but validated numeric arrays.

class _Frozen:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise ModelFileError("refused an attempt to modify a loader object")

    def __setstate__(self, state):
        raise ModelFileError("refused an attempt to modify a loader object")

    def __reduce__(self):
        raise TypeError("loader objects are not picklable")


class _NdarrayMarker(_Frozen):
    """Stands in for ``numpy.ndarray``: only recognised by ``_reconstruct``, never called."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise ModelFileError("refused to call numpy.ndarray directly: arrays must carry their data")


_NDARRAY = _NdarrayMarker()


class _DtypeSpec:
    """A numeric dtype named by the file; BUILD may only set its byte order."""

    __slots__ = ("dtype", "_built")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self._built = dtype, False

    def __setstate__(self, state) -> None:
        if self._built:
            raise ModelFileError("refused a dtype that is rebuilt twice")
        self._built = True
        if (not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4)
                or any(s is not None for s in state[2:5])):
            raise ModelFileError("refused a structured or malformed dtype")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])
        elif state[1] not in ("=", "|"):
            raise ModelFileError("refused a dtype with an unknown byte order")


class _ArrayBuilder:
    """What ``_reconstruct`` returns; BUILD gives it (version, shape, dtype, fortran, data)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array = None

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise ModelFileError("refused an array that is rebuilt twice")
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise ModelFileError("refused a malformed array")
        _, shape, spec, fortran, raw = state
        if not isinstance(fortran, bool):
            raise ModelFileError("refused a malformed array")
        self.array = _array_from(raw, spec, shape, "F" if fortran else "C")


def _numeric_dtype(name, align=False, copy=False) -> _DtypeSpec:
    if not isinstance(name, str) or len(name) > 4:
        raise ModelFileError(f"refused array dtype {_short(name)}: only plain numeric arrays are allowed")
    try:
        dt = np.dtype(name)
    except (TypeError, ValueError):
        raise ModelFileError(f"refused array dtype {_short(name)}") from None
    if dt.hasobject or dt.kind + str(dt.itemsize) not in _NUMERIC_DTYPES:
        raise ModelFileError(f"refused array dtype {_short(name)}: only plain numeric arrays are allowed")
    return _DtypeSpec(dt)


def _array_from(raw, spec, shape, order) -> np.ndarray:
    """A fresh, writable array from the file's bytes, after checking its size against them."""
    if not isinstance(spec, _DtypeSpec):
        raise ModelFileError("refused an array without a plain numeric dtype")
    if (not isinstance(shape, tuple) or len(shape) > 8
            or not all(type(n) is int and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape)):
        raise ModelFileError(f"refused an array of shape {_short(shape)}")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise ModelFileError(f"refused an array of {count} elements (limit {MAX_ARRAY_ELEMENTS})")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != count * spec.dtype.itemsize:
        raise ModelFileError(f"refused an array of shape {shape} whose data has the wrong size")
    if order not in ("C", "F"):
        raise ModelFileError("refused an array with an unknown memory order")
    array = np.frombuffer(raw, spec.dtype).reshape(shape, order=order)
    return array.astype(spec.dtype.newbyteorder("="), order="C")  # native order, own copy


class _Constructor(_Frozen):
    __slots__ = ("_build",)

    def __init__(self, build) -> None:
        object.__setattr__(self, "_build", build)

    def __call__(self, *args):
        return self._build(*args)


def _reconstruct(cls, shape, typecode) -> _ArrayBuilder:
    # NumPy pickles an empty placeholder and fills it by BUILD; refuse anything else here.
    if cls is not _NDARRAY or shape != (0,) or typecode != b"b":
        raise ModelFileError("refused a malformed array in the file")
    return _ArrayBuilder()


def _frombuffer(buf, spec, shape, order) -> np.ndarray:
    return _array_from(buf, spec, shape, order)  # protocol 5's way of pickling arrays


_reconstruct_global = _Constructor(_reconstruct)
_frombuffer_global = _Constructor(_frombuffer)
_dtype_global = _Constructor(_numeric_dtype)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_global,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_global,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype_global,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer_global,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer_global,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            where = ".".join(s[:60] if isinstance(s, str) else _short(s) for s in (module, name))
            raise ModelFileError(f"refused to load {where}: model files may "
                                 "only contain plain data and numeric arrays") from None

    def persistent_load(self, pid):
        raise ModelFileError("refused a persistent reference in the file")


# --- step 4a: rebuild as plain data ---------------------------------------------------------

_END = object()


def _count_values(obj) -> None:
    """Refuse graphs of more than MAX_NODES values or MAX_DEPTH levels, shared references counted again.

    Walks without copying, so a small graph that expands exponentially (each list holding
    the previous one ten times) is refused before anyone, including ``_plain``, expands it.
    """
    budget = MAX_NODES
    stack = [iter((obj,))]  # one iterator per open container: memory grows with depth only
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        budget -= 1
        if budget < 0:
            raise ModelFileError(f"not a model file: more than {MAX_NODES} values")
        if type(item) in (list, tuple):
            children = iter(item)
        elif type(item) is dict:
            children = itertools.chain.from_iterable(item.items())
        else:
            continue
        if len(stack) > MAX_DEPTH:
            raise ModelFileError("not a model file: nesting too deep")
        stack.append(children)


def _plain(obj):
    """Copy ``obj`` as dicts (str keys), lists, tuples, scalars and numeric arrays; refuse the rest."""
    kind = type(obj)
    if obj is None or kind in (bool, float):
        return obj
    if kind is int:
        if not -MAX_INT <= obj < MAX_INT:
            raise ModelFileError("refused an integer too large for a model file")
        return obj
    if kind is str:
        if len(obj) > MAX_STRING:
            raise ModelFileError(f"refused a string of {len(obj)} characters (limit {MAX_STRING})")
        return obj
    if kind is np.ndarray:  # only _array_from makes these during loading
        return obj
    if kind is _ArrayBuilder:
        if obj.array is None:
            raise ModelFileError("refused an array that was never filled in")
        return obj.array
    if kind is list or kind is tuple:
        return kind(_plain(v) for v in obj)
    if kind is dict:
        out = {}
        for k, v in obj.items():
            if type(k) is not str:
                raise ModelFileError(f"refused a dictionary key of type {type(k).__name__}")
            out[_plain(k)] = _plain(v)
        return out
    raise ModelFileError(f"refused a value of type {kind.__name__}: model files may only "
                         "contain plain data and numeric arrays")


def safe_loads(data: bytes):
    """Unpickle bytes admitting only plain containers, numbers, strings and numeric arrays."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"file is {len(data)} bytes, above the {MAX_FILE_BYTES}-byte limit")
    if data[:1] != b"\x80":
        what = " (it is a zip archive)" if data.startswith(b"PK\x03\x04") else ""
        raise ModelFileError(f"refused: not a model file{what}; it does not start with a pickle "
                             "header (protocol 3 to 5)")
    if len(data) < 2:
        raise ModelFileError("not a readable model file (truncated)")
    if not 3 <= data[1] <= 5:
        raise ModelFileError(f"unsupported pickle protocol {data[1]} (3 to 5 are read)")
    _scan_opcodes(data)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except ModelFileError:
        raise
    except (RecursionError, MemoryError):
        raise ModelFileError("not a model file: it asks for too much memory") from None
    except Exception as e:  # any parse failure of untrusted bytes is the file's fault
        raise ModelFileError(f"not a readable model file ({_describe(e)})") from None
    _count_values(obj)
    return _plain(obj)


# --- step 4b: check the fields --------------------------------------------------------------

def _validated_params(params, n_layers: int, activation: str) -> dict[str, np.ndarray]:
    """Check keys, shapes chain, dtypes, finiteness and overflow; return float32 arrays."""
    expected = {f"{p}{i}" for i in range(1, n_layers + 1) for p in "Wb"}
    if not isinstance(params, dict) or set(params) != expected:
        raise ModelFileError(f"parameters must be exactly {sorted(expected)}")
    out = {}
    for i in range(1, n_layers + 1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        if not (isinstance(W, np.ndarray) and isinstance(b, np.ndarray)):
            raise ModelFileError(f"W{i}/b{i} must be arrays")
        if W.dtype.kind != "f" or b.dtype.kind != "f":
            raise ModelFileError(f"W{i}/b{i} must be float arrays, got {W.dtype}/{b.dtype}")
        if W.ndim != 2 or b.shape != (W.shape[1],):
            raise ModelFileError(f"W{i} {W.shape} and b{i} {b.shape} do not fit together")
        if W.shape[1] > MAX_UNITS or W.shape[1] < 1:
            raise ModelFileError(f"layer {i} has {W.shape[1]} units; 1 to {MAX_UNITS} are allowed")
        if i > 1 and W.shape[0] != out[f"W{i - 1}"].shape[1]:
            raise ModelFileError(f"W{i} expects {W.shape[0]} inputs but layer {i - 1} "
                                 f"has {out[f'W{i - 1}'].shape[1]} units")
        # Convert first: a float64 1e300 is finite but becomes inf as float32.
        with np.errstate(over="ignore"):
            W32, b32 = W.astype(np.float32), b.astype(np.float32)
        if not (np.all(np.isfinite(W32)) and np.all(np.isfinite(b32))):
            raise ModelFileError(f"W{i}/b{i} contain NaN or infinite values")
        out[f"W{i}"], out[f"b{i}"] = W32, b32
    if out["W1"].shape[0] != 784 or out[f"W{n_layers}"].shape[1] != 10:
        raise ModelFileError("model must map 784 inputs to 10 classes")
    if logit_bound(out, activation) > MAX_LOGIT:
        raise ModelFileError("weights are so large that predictions would overflow")
    return out


def logit_bound(params: dict[str, np.ndarray], activation: str) -> float:
    """An upper bound on |activation| at any layer, over all inputs in [0, 1]^784.

    Interval arithmetic: |x @ W + b| <= |x| @ |W| + |b| elementwise; relu keeps the bound,
    sigmoid outputs are below 1. Float32 partial sums never exceed it, so below ``MAX_LOGIT``
    the forward pass cannot overflow. Returns inf if the bound itself overflows.
    """
    n_layers = len(params) // 2
    bound = np.ones(params["W1"].shape[0])
    worst = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, n_layers + 1):
            z = bound @ np.abs(params[f"W{i}"].astype(np.float64)) + np.abs(params[f"b{i}"])
            worst = max(worst, float(np.max(z)) if np.all(np.isfinite(z)) else math.inf)
            bound = np.ones_like(z) if activation == "sigmoid" else z  # sigmoid(z) is in (0, 1)
    return worst


def _check_type(value, annotation: str, where: str) -> None:
    """Check a value against a dataclass field annotation such as ``float | None``."""
    options = [a.strip() for a in annotation.split("|")]
    if "None" in options and value is None:
        return
    base = options[0]
    ok = {
        "int": type(value) is int,
        "float": type(value) in (int, float) and math.isfinite(value),
        "bool": type(value) is bool,
        "str": type(value) is str,
    }.get(base)
    if ok is None and base.startswith("tuple["):
        item = "float" if "float" in base else "int"
        ok = isinstance(value, (list, tuple)) and len(value) <= MAX_LAYERS
        for v in value if ok else ():
            _check_type(v, item, where)
    if ok is False:
        raise ModelFileError(f"{where} is {_short(value)}, expected {annotation}")


def _checked_config(config, sizes: list[int], activation: str) -> TrainConfig:
    """TrainConfig from the file's dict; unknown keys are ignored (later minor additions)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ModelFileError("config must be a dictionary")
    known = {f.name: f for f in fields(TrainConfig)}
    values = {}
    for name, value in config.items():
        if name in known and name not in ("hidden_sizes", "activation"):
            _check_type(value, str(known[name].type), f"config {name}")
            values[name] = value
    if values.get("seed", 0) < 0:
        raise ModelFileError("config seed must be >= 0")
    try:
        return TrainConfig(**values, hidden_sizes=tuple(sizes[1:-1]), activation=activation)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"invalid training config in file: {_describe(e)}") from None


_SCALARS = (type(None), bool, int, float, str)


def _checked_history(history) -> list[dict]:
    """Progress records as flat dicts; the fields the charts read must have their types."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise ModelFileError("history must be a list")
    annotations = {f.name: str(f.type) for f in fields(Progress)}
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not all(isinstance(v, _SCALARS) for v in record.values()):
            raise ModelFileError(f"history record {i} is not a flat dictionary")
        if not {"epoch", "batch", "batches_per_epoch"} <= set(record):
            raise ModelFileError(f"history record {i} lacks epoch/batch/batches_per_epoch")
        for name, value in record.items():
            if name in annotations:
                # A diverged run legitimately records a NaN loss, so floats may be non-finite here.
                ann = annotations[name].replace("float", "number")
                if not (value is None and "None" in ann) and not {
                    "int": type(value) is int, "number": type(value) in (int, float),
                    "str": type(value) is str, "bool": type(value) is bool,
                }.get(ann.split("|")[0].strip(), True):
                    raise ModelFileError(f"history record {i}: {name} is {_short(value)}")
    return [dict(r) for r in history]


def _checked_optimizer_state(state, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Optimizer arrays keyed ``t`` (step count) or ``<m|v>_<param>`` with the parameter's shape."""
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise ModelFileError("optimizer_state must be a dictionary")
    out = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise ModelFileError(f"optimizer state {_short(key)} is not an array")
        if key == "t":
            if value.shape != () or value.dtype.kind not in "iu" or not 0 <= int(value) < MAX_INT:
                raise ModelFileError("optimizer step count t must be a non-negative integer")
            out[key] = value.astype(np.int64)
            continue
        prefix, _, name = key.partition("_")
        if prefix not in ("m", "v") or name not in params or value.shape != params[name].shape:
            raise ModelFileError(f"optimizer state {_short(key)} does not match the parameters")
        with np.errstate(over="ignore"):
            value = value.astype(np.float32)
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)) or (prefix == "v" and value.min() < 0):
            raise ModelFileError(f"optimizer state {key} holds invalid values")
        out[key] = value
    return out


def _is_notebook_format(obj) -> bool:
    return isinstance(obj, dict) and set(obj) == {"w1", "b1", "w2", "b2", "w3", "b3"}


def _from_notebook(obj: dict) -> MLP:
    """The seed notebook's dict: weights (out, in), biases (out, 1), sigmoid hidden layers."""
    params = {}
    for i in (1, 2, 3):
        w, b = obj[f"w{i}"], obj[f"b{i}"]
        if not (isinstance(w, np.ndarray) and isinstance(b, np.ndarray) and w.ndim == 2
                and b.shape == (w.shape[0], 1)):
            raise ModelFileError(f"notebook model: w{i}/b{i} have the wrong shapes")
        params[f"W{i}"], params[f"b{i}"] = w.T, b[:, 0]
    params = _validated_params(params, 3, "sigmoid")
    sizes = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in (1, 2, 3)]
    model = MLP(TrainConfig(hidden_sizes=tuple(sizes[1:-1]), activation="sigmoid", optimizer="sgd",
                            learning_rate=0.01, batch_size=1))
    model.params_ = {k: np.ascontiguousarray(v) for k, v in params.items()}
    model.info_ = {"source": "original notebook pickle (w1..b3)"}
    return model


def _from_dict(obj: dict) -> MLP:
    version = obj.get("format_version")
    if type(version) is not int:
        raise ModelFileError("not an mnist_net model file (no format_version)")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"model file format {version} is newer than this program supports "
                             f"({FORMAT_VERSION}); upgrade mnist_net to load it")
    if version < 1:
        raise ModelFileError(f"unknown model file format {version}")
    if obj.get("kind", KIND) != KIND:
        raise ModelFileError(f"not an mnist_net model: kind is {_short(obj.get('kind'))}")
    sizes = obj.get("layer_sizes")
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS
            or not all(type(s) is int and 1 <= s <= MAX_UNITS for s in sizes)):
        raise ModelFileError(f"layer_sizes must be a list of 2-{MAX_LAYERS} ints in 1..{MAX_UNITS}")
    activation = obj.get("activation")
    if activation not in ACTIVATIONS:
        raise ModelFileError(f"unknown activation {_short(activation)}")
    params = _validated_params(obj.get("params"), len(sizes) - 1, activation)
    actual = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, len(sizes))]
    if actual != sizes:
        raise ModelFileError(f"layer_sizes {sizes} do not match the parameters {actual}")
    model = MLP(_checked_config(obj.get("config"), sizes, activation))
    model.params_ = params
    model.history_ = _checked_history(obj.get("history"))
    for name in ("metrics", "info"):
        if not isinstance(obj.get(name) or {}, dict):
            raise ModelFileError(f"{name} must be a dictionary")
    model.metrics_ = dict(obj.get("metrics") or {})
    model.info_ = dict(obj.get("info") or {})
    data_hash = obj.get("data_hash")
    if data_hash is not None and (type(data_hash) is not str or len(data_hash) > 128):
        raise ModelFileError("data_hash must be a short string")
    model.data_hash_ = data_hash
    epochs_done = obj.get("epochs_done", 0)
    if type(epochs_done) is not int or not 0 <= epochs_done <= MAX_EPOCHS_DONE:
        raise ModelFileError(f"epochs_done must be an int in 0..{MAX_EPOCHS_DONE}")
    model.epochs_done_ = epochs_done
    model.optimizer_state_ = _checked_optimizer_state(obj.get("optimizer_state"), params)
    return model


def model_from_bytes(data: bytes) -> MLP:
    """Load a model from the bytes of a model file (ours or the notebook's); ModelFileError if not valid."""
    if not data:
        raise ModelFileError("the file is empty")
    obj = safe_loads(data)
    if _is_notebook_format(obj):
        return _from_notebook(obj)
    if isinstance(obj, dict):
        return _from_dict(obj)
    raise ModelFileError(f"not a model file: it holds a {type(obj).__name__}, not a model dict")


def default_model_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "default_model.pkl"


def load_model(path: str | os.PathLike | None = None) -> MLP:
    """Load a model file safely. With no path, the shipped default model in assets/."""
    path = Path(path) if path is not None else default_model_path()
    try:
        # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ModelFileError(f"{path}: not a regular file")
            data = f.read(MAX_FILE_BYTES + 1)  # bounded even if the file grows or lies about its size
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"{path}: above the {MAX_FILE_BYTES}-byte limit")
    try:
        return model_from_bytes(data)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None


# --- saving ---------------------------------------------------------------------------------

def _plain_for_saving(value):
    """NumPy scalars -> Python numbers and tuples -> lists, so the loader accepts what we write."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain_for_saving(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_for_saving(v) for v in value]
    return value


def model_to_dict(model: MLP) -> dict:
    """The plain dict written to disk (see the module docstring)."""
    if model.params_ is None:
        raise ValueError("cannot save a model that has not been fitted")
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "layer_sizes": [int(s) for s in model.layer_sizes],
        "activation": model.activation,
        "params": {k: np.ascontiguousarray(v) for k, v in model.params_.items()},
        "config": model.config.to_dict(),
        "history": [_plain_for_saving(h) for h in model.history_],
        "metrics": _plain_for_saving(model.metrics_),
        "data_hash": model.data_hash_,
        "optimizer_state": {k: np.asarray(v) for k, v in model.optimizer_state_.items()},
        "epochs_done": int(model.epochs_done_),
        "info": _plain_for_saving(model.info_),
    }


def model_to_bytes(model: MLP) -> bytes:
    """The file's bytes; ModelFileError if the loader would refuse them (e.g. NaN weights)."""
    # Protocol 4: arrays go in-band via _reconstruct, which the loader knows.
    data = pickle.dumps(model_to_dict(model), protocol=4)
    try:
        model_from_bytes(data)  # never write a file that cannot be loaded back
    except ModelFileError as e:
        raise ModelFileError(f"this model cannot be saved: it would not load back ({e})") from None
    return data


_TEMP_NAME = re.compile(r"^\..+\.(\d{1,9})-[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or unknown: keep its files
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files left by saves whose process died mid-write; return what was removed.

    A temp file is ``.<name>.<pid>-<random>.tmp``. It is stale when its writer's process is
    gone and it has not changed for ``STALE_TEMP_SECONDS``; live writers are never touched.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_SECONDS:
                continue
            if not _pid_alive(int(match.group(1))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete
    return removed


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not every platform or filesystem allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model(model: MLP, path: str | os.PathLike) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then rename over the target.

    A crash, kill or full disk mid-write leaves any existing file at ``path`` intact and no
    partial file under the final name. A failed write removes its temp file; one left by a
    killed process is removed by a later save into the same folder. Raises OSError (with
    its errno, e.g. ENOSPC) naming the path, or ModelFileError if the model is not savable.
    """
    path = Path(path)
    data = model_to_bytes(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; a model file is meant to be shared
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(e.errno, f"could not save the model to {path}: {e.strerror or e}; "
                                   "any earlier file there is unchanged") from e
        raise
    _fsync_directory(path.parent)
    return path
