"""Unpickling untrusted bytes: only plain data and numeric arrays, nothing that runs.

Model files come from strangers (uploads), so ``safe_loads`` trusts nothing in them:

1. Size: at most ``MAX_FILE_BYTES``.
2. Opcodes: the pickle is scanned *before* it is unpickled; only opcodes for plain data,
   globals and arrays are admitted, at most ``MAX_OPCODES`` of them, and every declared
   length must fit in the file (so a header claiming 10^12 bytes allocates nothing).
3. Globals: the only names it resolves are NumPy's array and dtype reconstructors, and
   they resolve to our own builders, not to NumPy: numeric dtypes only, array sizes
   checked against their data, nothing callable that the file could misuse.
4. The result is rebuilt as plain dicts, lists, numbers, strings and numeric arrays
   (bounded depth and total size, so shared references cannot explode).

What the data must mean (a model's shapes, config, ...) is checked in ``model_io``.
Non-goals: pickles of classes, pickle protocols below 3.
"""

from __future__ import annotations

import io
import itertools
import math
import pickle
import pickletools
import reprlib

import numpy as np

MAX_FILE_BYTES = 200 * 1024 * 1024  # far above any sensible MLP; bounds memory on load
MAX_OPCODES = 2_000_000  # a real file has a few thousand; bounds the objects a file can make
MAX_NODES = 1_000_000  # values in the data, counting each shared reference again
MAX_DEPTH = 32
MAX_STRING = 100_000  # characters; real strings are names, dates and command lines
MAX_INT = 2**63
MAX_ARRAY_ELEMENTS = 20_000_000
_NUMERIC_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


def short_repr(value) -> str:
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
        raise ModelFileError(f"not a readable model file ({describe_error(e)})") from None
    raise ModelFileError(f"not a model file: more than {MAX_OPCODES} pickle operations")


def describe_error(e: BaseException) -> str:
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
        raise ModelFileError(f"refused array dtype {short_repr(name)}: only plain numeric arrays are allowed")
    try:
        dt = np.dtype(name)
    except (TypeError, ValueError):
        raise ModelFileError(f"refused array dtype {short_repr(name)}") from None
    if dt.hasobject or dt.kind + str(dt.itemsize) not in _NUMERIC_DTYPES:
        raise ModelFileError(f"refused array dtype {short_repr(name)}: only plain numeric arrays are allowed")
    return _DtypeSpec(dt)


def _array_from(raw, spec, shape, order) -> np.ndarray:
    """A fresh, writable array from the file's bytes, after checking its size against them."""
    if not isinstance(spec, _DtypeSpec):
        raise ModelFileError("refused an array without a plain numeric dtype")
    if (not isinstance(shape, tuple) or len(shape) > 8
            or not all(type(n) is int and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape)):
        raise ModelFileError(f"refused an array of shape {short_repr(shape)}")
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
            where = ".".join(s[:60] if isinstance(s, str) else short_repr(s) for s in (module, name))
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
        raise ModelFileError(f"not a readable model file ({describe_error(e)})") from None
    _count_values(obj)
    return _plain(obj)
