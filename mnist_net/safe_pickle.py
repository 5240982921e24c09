"""Unpickling untrusted bytes: only plain data and numeric arrays, nothing that runs, at bounded cost.

Model files come from strangers (uploads to a server that serves every session from one
process), so ``safe_loads`` trusts nothing in them, and any file up to the size limit is
loaded or refused in time and memory proportional to its size:

1. Size: at most ``MAX_FILE_BYTES``.
2. Opcodes: the pickle is scanned *before* it is unpickled, read exactly as CPython's
   unpickler will read it; only opcodes for plain data, globals and arrays are admitted,
   at most ``MAX_OPCODES`` of them, and every declared length must fit in the file (so a
   header claiming 10^12 bytes allocates nothing). An operation that runs past the end of
   its frame is refused: the unpickler would skip the frame's rest and read on after it,
   running as operations bytes that the scan took for data.
3. Arguments, before anything is built from them: integers of at most ``MAX_INT_BYTES``
   bytes, strings of at most ``MAX_STRING_BYTES`` bytes, text arguments (names of globals,
   protocol 0 numbers) of at most ``MAX_LINE_BYTES`` bytes (decimal digits cost quadratic
   time to parse, and the interpreter's digit limit may be lifted).
4. Structure: the scan follows the unpickler's stack and memo, one byte (the kind of
   value) per entry, and refuses
   - memo indices that do not count up from 0: the unpickler's memo table is as long as
     the largest index, so a 9-byte file could make it allocate gigabytes;
   - dict keys that are not str, before the unpickler hashes them: ints equal modulo
     2**61 - 1 share a hash (tens of thousands cost quadratic time), and a tuple hashes
     every shared reference it holds; str hashes are salted per process (unless
     PYTHONHASHSEED fixes the salt), so colliding keys cannot be precomputed;
   - APPEND(S) onto anything but a list, SETITEM(S) into anything but a dict (on anything
     else they call its methods, e.g. an array's element-wise assignment);
   - more than ``MAX_NODES`` values made, or anything but one value left at STOP.
5. Globals: the only names it resolves are NumPy's array and dtype reconstructors, and
   they resolve to our own builders, not to NumPy: numeric dtypes only, arguments checked
   by exact type before any comparison (comparing an array the file made is element-wise),
   array sizes checked against their data, and all arrays of one load together no larger
   than the file (one buffer referenced a million times cannot fill a million arrays).
6. The result is rebuilt as plain dicts, lists, numbers, strings and numeric arrays, of
   bounded depth and total size counting every shared reference again, so they cannot
   explode; a container shared by many references is walked and copied once.

What the data must mean (a model's shapes, config, ...) is checked in ``model_io``.
Non-goals: pickles of classes, pickle protocols below 3, unpicklers other than CPython's C one.
"""

from __future__ import annotations

import array
import functools
import io
import itertools
import math
import pickle
import pickletools
import reprlib
from typing import Any

import numpy as np

MAX_FILE_BYTES = 200 * 1024 * 1024  # far above any sensible MLP; bounds memory on load
MAX_OPCODES = 2_000_000  # a real file has a few thousand; bounds the objects a file can make
MAX_NODES = 1_000_000  # values a file may make, and in the data counting each shared reference again
MAX_DEPTH = 32
MAX_STRING = 100_000  # characters; real strings are names, dates and command lines
MAX_STRING_BYTES = 4 * MAX_STRING  # UTF-8 needs at most 4 bytes a character, so longer is surely too long
MAX_LINE_BYTES = 256  # text arguments (names of globals, protocol 0 numbers): real ones are below 40
MAX_INT = 2**63
MAX_INT_BYTES = 8  # every int in [-MAX_INT, MAX_INT) pickles in at most 8 bytes
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


# --- steps 2-4: scan the opcodes before unpickling -----------------------------------------

_OPCODES = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}


class _Overrun(Exception):
    """An argument runs past the end of the data, or past the end of the frame it starts in."""


def _byte(data: bytes, start: int, limit: int):
    if start >= limit:
        raise _Overrun
    return data[start], start + 1


def _fixed(size: int, signed: bool = False):
    """Reader of a ``size``-byte little-endian integer argument."""
    if size == 1 and not signed:
        return _byte

    def read(data: bytes, start: int, limit: int):
        end = start + size
        if end > limit:
            raise _Overrun
        return int.from_bytes(data[start:end], "little", signed=signed), end

    return read


def _counted(size: int, cap: int | None = None, refusal: str = "", signed: bool = False):
    """Reader of a ``size``-byte length followed by that many bytes; the argument is the length.

    The bytes are skipped, not copied. A length above ``cap`` is refused with ``refusal``
    (formatted with the length) before anything is built from it.
    """

    def read(data: bytes, start: int, limit: int):
        begin = start + size
        if begin > limit:
            raise _Overrun
        length = int.from_bytes(data[start:begin], "little", signed=signed)
        if length < 0:
            raise ModelFileError("not a readable model file (a negative length)")
        if begin + length > limit:
            raise _Overrun
        if cap is not None and length > cap:
            raise ModelFileError(refusal.format(length))
        return length, begin + length

    return read


def _lines(count: int, cap: int, refusal: str):
    """Reader of ``count`` newline-terminated lines of at most ``cap`` bytes each (a longer one is refused).

    The newline is searched for only within the frame, as the unpickler does.
    """

    def read(data: bytes, start: int, limit: int):
        lines = []
        for _ in range(count):
            window = min(limit, start + cap + 1)
            newline = data.find(b"\n", start, window)
            if newline < 0:
                if window < limit:
                    raise ModelFileError(refusal)
                raise _Overrun
            lines.append(data[start : newline + 1])
            start = newline + 1
        return (lines[0] if count == 1 else lines), start

    return read


def _memo_index(line: bytes) -> int:
    """The index of a text PUT or GET; only plain digits, which every reader parses alike."""
    digits = line[:-1]
    if not digits.isdigit():
        raise ModelFileError("not a readable model file (a memo index that is not a number)")
    return int(digits)


# What the scan knows of each value: its kind, one byte, so following millions costs megabytes.
_NONE, _BOOL, _INT, _FLOAT, _STR, _BYTES, _BYTEARRAY, _LIST, _TUPLE, _DICT, _GLOBAL, _BUILT = range(12)
_KIND_NAMES = (
    "NoneType",
    "bool",
    "int",
    "float",
    "str",
    "bytes",
    "bytearray",
    "list",
    "tuple",
    "dict",
    "global",
    "array or dtype",
)
_STORED = 255  # not a kind: in the operation table, "push the kind stored at the argument's memo index"
_STR_BYTE = bytes([_STR])

_LONG_TEXT = f"refused a pickle operation argument longer than {MAX_LINE_BYTES} bytes"
_LONG_STRING = f"refused a string of {{}} bytes (a model file's strings have at most {MAX_STRING} characters)"
_BIG_INT = "refused an integer too large for a model file"

# The admitted opcodes, for plain data, globals and arrays only.
# name: (argument reader, or the width of an argument the scan skips; effect on the stack machine;
#        the kind it pushes if it makes a value, or _STORED if it pushes one from the memo)
_OPERATIONS = {
    "PROTO": (_fixed(1), "protocol", None),
    "FRAME": (_fixed(8), None, None),
    "STOP": (0, None, None),
    "MARK": (0, "mark", None),
    "POP": (0, "pop", None),
    "POP_MARK": (0, "pop_mark", None),
    "DUP": (0, "dup", None),
    "MEMOIZE": (0, "memoize", None),
    "PUT": (_lines(1, MAX_LINE_BYTES, _LONG_TEXT), "put_text", None),
    "BINPUT": (_fixed(1), "put", None),
    "LONG_BINPUT": (_fixed(4), "put", None),
    "GET": (_lines(1, MAX_LINE_BYTES, _LONG_TEXT), "get_text", None),
    "BINGET": (1, None, _STORED),
    "LONG_BINGET": (4, None, _STORED),
    "NONE": (0, "new", _NONE),
    "NEWTRUE": (0, "new", _BOOL),
    "NEWFALSE": (0, "new", _BOOL),
    "INT": (_lines(1, MAX_LINE_BYTES, _LONG_TEXT), "int_text", None),
    "BININT": (4, "new", _INT),
    "BININT1": (1, "new", _INT),
    "BININT2": (2, "new", _INT),
    "LONG": (_lines(1, MAX_LINE_BYTES, _LONG_TEXT), "new", _INT),
    "LONG1": (_counted(1, MAX_INT_BYTES, _BIG_INT), "new", _INT),
    "LONG4": (_counted(4, MAX_INT_BYTES, _BIG_INT, signed=True), "new", _INT),
    "FLOAT": (_lines(1, MAX_LINE_BYTES, _LONG_TEXT), "new", _FLOAT),
    "BINFLOAT": (8, "new", _FLOAT),
    "UNICODE": (_lines(1, MAX_STRING_BYTES, _LONG_STRING.format(f"over {MAX_STRING_BYTES}")), "new", _STR),
    "BINUNICODE": (_counted(4, MAX_STRING_BYTES, _LONG_STRING), "new", _STR),
    "SHORT_BINUNICODE": (_counted(1), "new", _STR),
    "BINUNICODE8": (_counted(8, MAX_STRING_BYTES, _LONG_STRING), "new", _STR),
    "BINBYTES": (_counted(4), "new", _BYTES),
    "SHORT_BINBYTES": (_counted(1), "new", _BYTES),
    "BINBYTES8": (_counted(8), "new", _BYTES),
    "BYTEARRAY8": (_counted(8), "new", _BYTEARRAY),
    "EMPTY_LIST": (0, "new", _LIST),
    "APPEND": (0, "append", None),
    "APPENDS": (0, "appends", None),
    "LIST": (0, "list_from_mark", None),
    "EMPTY_TUPLE": (0, "new", _TUPLE),
    "TUPLE": (0, "tuple_from_mark", None),
    "TUPLE1": (0, "tuple1", None),
    "TUPLE2": (0, "tuple2", None),
    "TUPLE3": (0, "tuple3", None),
    "EMPTY_DICT": (0, "new", _DICT),
    "DICT": (0, "dict_from_mark", None),
    "SETITEM": (0, "setitem", None),
    "SETITEMS": (0, "setitems", None),
    "GLOBAL": (_lines(2, MAX_LINE_BYTES, _LONG_TEXT), "new", _GLOBAL),
    "STACK_GLOBAL": (0, "stack_global", None),
    "REDUCE": (0, "reduce", None),
    "BUILD": (0, "build", None),
}


class _StackMachine:
    """The unpickler's stack, mark stack and memo, each value replaced by its kind.

    Mirrors CPython's C unpickler (``Modules/_pickle.c``) operation by operation, including
    its fence: nothing below the latest MARK can be popped, except POP of the MARK itself.
    Whatever it cannot follow exactly it refuses, so the kinds it sees are the values the
    unpickler will build, and it can refuse a dict key before the unpickler hashes it.
    """

    def __init__(self) -> None:
        self.stack = bytearray()
        self.marks = array.array("q")  # stack heights at the open MARKs
        self.memo = bytearray()  # memo[i] is the kind stored at index i; indices count up from 0
        self.made = 0  # values created (DUP and GET repeat one, they make none)

    # -- the primitives, with the unpickler's underflow rules --

    def _require(self, n: int) -> None:
        """Refuse unless ``n`` values lie above the latest MARK: the unpickler touches none below it."""
        marks = self.marks
        if len(self.stack) - (marks[-1] if marks else 0) < n:
            raise ModelFileError("not a readable model file (pickle stack underflow)")

    def new(self, kind: int) -> None:
        self.stack.append(kind)
        self.made += 1

    def take(self, n: int) -> bytearray:
        """Pop the top ``n`` kinds (n >= 1)."""
        self._require(n)
        kinds = self.stack[-n:]
        del self.stack[-n:]
        return kinds

    def top(self) -> int:
        self._require(1)
        return self.stack[-1]

    def take_to_mark(self) -> bytearray:
        """Pop the latest MARK and every kind above it."""
        if not self.marks:
            raise ModelFileError("not a readable model file (no MARK for an operation that needs one)")
        start = self.marks.pop()
        kinds = self.stack[start:]
        del self.stack[start:]
        return kinds

    # -- the operations --

    def protocol(self, version: int) -> None:
        if not 3 <= version <= 5:
            raise ModelFileError(f"unsupported pickle protocol {version} (3 to 5 are read)")

    def mark(self, _arg) -> None:
        self.marks.append(len(self.stack))

    def pop(self, _arg) -> None:
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        else:
            self._require(1)
            del self.stack[-1]

    def pop_mark(self, _arg) -> None:
        self.take_to_mark()

    def dup(self, _arg) -> None:
        self._require(1)
        self.stack.append(self.stack[-1])

    def memoize(self, _arg) -> None:
        self._require(1)
        self.memo.append(self.stack[-1])

    def put(self, index: int) -> None:
        """Store the top kind at ``index``, which may be at most the number stored so far.

        The unpickler's memo is a table as long as the largest index: one huge index in
        a 9-byte file would make it allocate gigabytes. Dense indices keep it as long as
        the number of values stored, and picklers only ever write 0, 1, 2, ...
        """
        kind = self.top()
        if index < len(self.memo):
            self.memo[index] = kind
        elif index == len(self.memo):
            self.memo.append(kind)
        else:
            raise ModelFileError(
                f"refused memo index {short_repr(index)}: a pickle stores values at 0, 1, 2, ... "
                f"and this one has stored {len(self.memo)}"
            )

    def put_text(self, line: bytes) -> None:
        self.put(_memo_index(line))

    def get(self, index: int) -> None:
        if index >= len(self.memo):
            raise ModelFileError(f"not a readable model file (memo index {short_repr(index)} was never stored)")
        self.stack.append(self.memo[index])

    def get_text(self, line: bytes) -> None:
        self.get(_memo_index(line))

    def int_text(self, line: bytes) -> None:
        self.new(_BOOL if line in (b"00\n", b"01\n") else _INT)

    def list_from_mark(self, _arg) -> None:
        self.take_to_mark()
        self.new(_LIST)

    def tuple_from_mark(self, _arg) -> None:
        self.take_to_mark()
        self.new(_TUPLE)

    def tuple1(self, _arg) -> None:
        self.take(1)
        self.new(_TUPLE)

    def tuple2(self, _arg) -> None:
        self.take(2)
        self.new(_TUPLE)

    def tuple3(self, _arg) -> None:
        self.take(3)
        self.new(_TUPLE)

    def dict_from_mark(self, _arg) -> None:
        _check_dict_items(self.take_to_mark())
        self.new(_DICT)

    def append(self, _arg) -> None:
        self._require(2)  # the value, and the list below it
        stack = self.stack
        del stack[-1]
        if stack[-1] != _LIST:
            _refuse_target(stack[-1], "APPEND")

    def appends(self, _arg) -> None:
        self.take_to_mark()
        if self.top() != _LIST:
            _refuse_target(self.top(), "APPENDS")

    def setitem(self, _arg) -> None:
        self._require(3)  # key and value, and the dict below them
        stack = self.stack
        if stack[-2] != _STR:
            _check_dict_items(stack[-2:])  # refuses the key
        if stack[-3] != _DICT:
            _refuse_target(stack[-3], "SETITEM")
        del stack[-2:]

    def setitems(self, _arg) -> None:
        _check_dict_items(self.take_to_mark())
        if self.top() != _DICT:
            _refuse_target(self.top(), "SETITEMS")

    def stack_global(self, _arg) -> None:
        if self.take(2) != bytes([_STR, _STR]):
            raise ModelFileError("not a readable model file (STACK_GLOBAL needs two strings)")
        self.new(_GLOBAL)

    def reduce(self, _arg) -> None:
        self.take(2)  # a global (one of ours) and its arguments
        self.new(_BUILT)  # our globals build only arrays and dtypes, or raise

    def build(self, _arg) -> None:
        self.take(1)  # the state; the object it is given to stays
        self.top()

    def stop(self) -> None:
        if self.made > MAX_NODES:
            raise ModelFileError(f"not a model file: more than {MAX_NODES} values")
        if len(self.stack) != 1 or self.marks:
            raise ModelFileError("not a readable model file (the pickle does not end with exactly one value)")


def _check_dict_items(kinds: bytearray) -> None:
    """Refuse an odd number of items, or a key that is not a str, before the unpickler hashes it.

    Model files only need str keys, whose hashes are salted per process. Ints, floats and
    tuples hash predictably: ints equal modulo 2**61 - 1 share a hash, so a dict of a few
    tens of thousands costs quadratic time, and a tuple hashes every shared reference in it
    (a 200-byte key can take longer than the universe).
    """
    if len(kinds) % 2:
        raise ModelFileError("not a readable model file (odd number of dictionary items)")
    not_str = kinds[::2].translate(None, _STR_BYTE)
    if not_str:
        raise ModelFileError(
            f"refused a dictionary key of type {_KIND_NAMES[not_str[0]]}: model files only have string keys"
        )


def _refuse_target(kind: int, operation: str):
    """APPEND(S) go only onto lists, SETITEM(S) only into dicts: on anything else they call its methods."""
    raise ModelFileError(
        f"refused pickle operation {operation} on a value of type {_KIND_NAMES[kind]}: "
        "model files only add items to lists and dictionaries"
    )


def _operation_table(machine: _StackMachine) -> list[tuple | None]:
    """For each opcode byte, None if it is not admitted, else
    (name, argument reader or None, width of a skipped argument, bound effect or None, kind pushed or None)."""
    table: list[tuple | None] = [None] * 256
    for code, op in _OPCODES.items():
        if op.name in _OPERATIONS:
            reader, effect, kind = _OPERATIONS[op.name]
            width, reader = (reader, None) if isinstance(reader, int) else (0, reader)
            bound = getattr(machine, effect) if effect not in (None, "new") else None
            table[code] = (op.name, reader, width, bound, kind)
    return table


def _refusal_of_opcode(code: int) -> ModelFileError:
    """The error for an opcode byte that is unknown or not admitted."""
    opcode = _OPCODES.get(code)
    if opcode is None:
        return ModelFileError("not a readable model file (unknown pickle operation or truncated)")
    return ModelFileError(
        f"refused pickle operation {opcode.name}: model files may only contain plain data and numeric arrays"
    )


def _scan_opcodes(data: bytes) -> None:
    """Refuse, before anything is unpickled, every file whose unpickling could cost more than its size.

    Reads the pickle exactly as CPython's unpickler will: each opcode is checked before its
    argument is parsed, arguments are bounded, and frames are followed (an operation
    running past the end of its frame is refused: the unpickler would drop the frame's
    rest and read on after it, so bytes the scan took for data would run as operations).
    The stack machine then checks what each operation does (bounds 2-4 of the module docstring).
    """
    machine = _StackMachine()
    table = _operation_table(machine)
    stack, memo = machine.stack, machine.memo
    made = 0  # values pushed inline below (the machine counts those its effects make)
    pos, size = 0, len(data)
    frame_end = 0  # the current frame's end; pos >= frame_end outside frames
    for _ in range(MAX_OPCODES):
        in_frame = pos < frame_end
        limit = frame_end if in_frame else size
        if pos >= limit:
            raise ModelFileError("not a readable model file (truncated)")
        entry = table[data[pos]]
        if entry is None:
            raise _refusal_of_opcode(data[pos])
        name, read, width, effect, kind = entry
        try:
            if read is None:
                arg, after = None, pos + 1 + width
                if after > limit:
                    raise _Overrun
            else:
                arg, after = read(data, pos + 1, limit)
        except _Overrun:
            where = "a pickle operation runs past the end of its frame" if in_frame else "truncated"
            raise ModelFileError(f"not a readable model file ({where})") from None
        if kind is not None:  # most operations make a value or repeat a stored one: inline, the hot path
            if kind != _STORED:
                stack.append(kind)
                made += 1
            else:
                index = data[pos + 1] if width == 1 else int.from_bytes(data[pos + 1 : after], "little")
                if index >= len(memo):
                    machine.get(index)  # refuses it
                stack.append(memo[index])
        elif effect is not None:
            effect(arg)
        elif name == "FRAME":
            if in_frame:
                raise ModelFileError("not a readable model file (a frame starts inside another frame)")
            frame_end = after + arg
            if frame_end > size:
                raise ModelFileError("not a readable model file (truncated)")
        else:  # STOP
            machine.made += made
            machine.stop()
            return
        pos = after
    raise ModelFileError(f"not a model file: more than {MAX_OPCODES} pickle operations")


def describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:200]


# --- step 5: the only globals a file may name ------------------------------------------------
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


def _is_exactly(value, expected) -> bool:
    """``value == expected`` with the same type at every level, in time bounded by ``expected``.

    Arguments come from the file, which may pass an array or a huge container where a
    number is expected; comparing those costs time in proportion to their size (an
    array compares element-wise), so types are checked first.
    """
    if type(value) is not type(expected):
        return False
    if type(expected) is tuple:
        return len(value) == len(expected) and all(_is_exactly(v, e) for v, e in zip(value, expected))
    return value == expected


def _is_one_of(value, options: tuple) -> bool:
    return any(_is_exactly(value, option) for option in options)


class _ArrayBudget:
    """Bytes of array data one load may still allocate: at most the file's size.

    Every array's data is in the file, so real files stay within it; without the budget
    one bytes object, referenced again and again from the memo, could fill a million arrays.
    """

    __slots__ = ("left",)

    def __init__(self, nbytes: int) -> None:
        self.left = nbytes

    def spend(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise ModelFileError("refused arrays holding more data than the file (one buffer used for many arrays)")
        self.left -= nbytes


class _DtypeSpec:
    """A numeric dtype named by the file; BUILD may only set its byte order."""

    __slots__ = ("dtype", "_built")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self._built = dtype, False

    def __setstate__(self, state) -> None:
        if self._built:
            raise ModelFileError("refused a dtype that is rebuilt twice")
        self._built = True
        if (
            type(state) is not tuple
            or len(state) not in (8, 9)
            or not _is_one_of(state[0], (3, 4))
            or any(s is not None for s in state[2:5])
        ):
            raise ModelFileError("refused a structured or malformed dtype")
        if _is_one_of(state[1], ("<", ">")):
            self.dtype = self.dtype.newbyteorder(state[1])
        elif not _is_one_of(state[1], ("=", "|")):
            raise ModelFileError("refused a dtype with an unknown byte order")


class _ArrayBuilder:
    """What ``_reconstruct`` returns, empty; BUILD fills it once with (version, shape, dtype, fortran, data).

    ``_frombuffer`` returns one already filled, so that a BUILD on it never reaches NumPy.
    """

    __slots__ = ("array", "_budget")

    def __init__(self, budget: _ArrayBudget, array: np.ndarray | None = None) -> None:
        self.array, self._budget = array, budget

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise ModelFileError("refused an array that is rebuilt twice")
        if type(state) is not tuple or len(state) != 5 or not _is_exactly(state[0], 1):
            raise ModelFileError("refused a malformed array")
        _, shape, spec, fortran, raw = state
        if type(fortran) is not bool:
            raise ModelFileError("refused a malformed array")
        self.array = _array_from(raw, spec, shape, "F" if fortran else "C", self._budget)


def _numeric_dtype(name, align=False, copy=False) -> _DtypeSpec:
    if type(name) is not str or len(name) > 4:
        raise ModelFileError(f"refused array dtype {short_repr(name)}: only plain numeric arrays are allowed")
    try:
        dt = np.dtype(name)
    except (TypeError, ValueError):
        raise ModelFileError(f"refused array dtype {short_repr(name)}") from None
    if dt.hasobject or dt.kind + str(dt.itemsize) not in _NUMERIC_DTYPES:
        raise ModelFileError(f"refused array dtype {short_repr(name)}: only plain numeric arrays are allowed")
    return _DtypeSpec(dt)


def _array_from(raw, spec, shape, order, budget: _ArrayBudget) -> np.ndarray:
    """A fresh, writable array from the file's bytes, after checking its size against them and the budget."""
    if type(spec) is not _DtypeSpec:
        raise ModelFileError("refused an array without a plain numeric dtype")
    if (
        type(shape) is not tuple
        or len(shape) > 8
        or not all(type(n) is int and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape)
    ):
        raise ModelFileError(f"refused an array of shape {short_repr(shape)}")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise ModelFileError(f"refused an array of {count} elements (limit {MAX_ARRAY_ELEMENTS})")
    if type(raw) not in (bytes, bytearray) or len(raw) != count * spec.dtype.itemsize:
        raise ModelFileError(f"refused an array of shape {shape} whose data has the wrong size")
    if not _is_one_of(order, ("C", "F")):
        raise ModelFileError("refused an array with an unknown memory order")
    budget.spend(len(raw))
    array = np.frombuffer(raw, spec.dtype).reshape(shape, order=order)
    return array.astype(spec.dtype.newbyteorder("="), order="C")  # native order, own copy


class _Constructor(_Frozen):
    __slots__ = ("_build",)

    def __init__(self, build) -> None:
        object.__setattr__(self, "_build", build)

    def __call__(self, *args):
        return self._build(*args)  # type: ignore[attr-defined]  # set in __init__, past the frozen __setattr__


def _reconstruct(budget: _ArrayBudget, cls, shape, typecode) -> _ArrayBuilder:
    # NumPy pickles an empty placeholder and fills it by BUILD; refuse anything else here.
    if cls is not _NDARRAY or not _is_exactly(shape, (0,)) or not _is_exactly(typecode, b"b"):
        raise ModelFileError("refused a malformed array in the file")
    return _ArrayBuilder(budget)


def _frombuffer(budget: _ArrayBudget, buf, spec, shape, order) -> _ArrayBuilder:
    # Protocol 5's way of pickling arrays.
    return _ArrayBuilder(budget, _array_from(buf, spec, shape, order, budget))


_dtype_global = _Constructor(_numeric_dtype)


def _loader_globals(budget: _ArrayBudget) -> dict[tuple[str, str], object]:
    """What each allowed global name resolves to in one load; its array builders share its budget."""
    reconstruct = _Constructor(functools.partial(_reconstruct, budget))
    frombuffer = _Constructor(functools.partial(_frombuffer, budget))
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _dtype_global,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, budget: _ArrayBudget) -> None:
        super().__init__(file)
        self._globals = _loader_globals(budget)

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            where = ".".join(s[:60] if isinstance(s, str) else short_repr(s) for s in (module, name))
            raise ModelFileError(
                f"refused to load {where}: model files may only contain plain data and numeric arrays"
            ) from None

    def persistent_load(self, pid):
        raise ModelFileError("refused a persistent reference in the file")


# --- step 6: rebuild as plain data ----------------------------------------------------------

_END = object()
_CONTAINERS = (list, tuple, dict)


def _items(container):
    """The values a container holds: a dict's keys and values, a list's or tuple's items."""
    return itertools.chain.from_iterable(container.items()) if type(container) is dict else iter(container)


def _count_values(obj) -> None:
    """Refuse graphs of more than MAX_NODES values or MAX_DEPTH levels, shared references counted again.

    Walks without copying, so a small graph that expands exponentially (each list holding
    the previous one ten times) is refused before anyone, including ``_plain``, expands it.
    Each container of two or more items is walked once: further references to it reuse its
    count and height, so the walk costs time in proportion to the distinct containers, not
    to the values they stand for (smaller containers are walked again, at most MAX_DEPTH
    steps a reference).
    """
    if type(obj) not in _CONTAINERS:
        return
    known: dict[int, tuple[int, int]] = {}  # id of a walked container of 2+ items -> (values, height)
    path = [(obj, _items(obj))]  # the open containers, outermost first: memory grows with depth only
    starts, heights = [0], [1]  # for each open container: the total before it, its height so far
    total = 1  # values so far, each reference counted again
    while path:
        item = next(path[-1][1], _END)
        if type(item) not in _CONTAINERS:  # a leaf, the common case (or the end of the open container)
            if item is not _END:
                total += 1
                if total > MAX_NODES:
                    raise ModelFileError(f"not a model file: more than {MAX_NODES} values")
                continue
            container = path.pop()[0]
            count, height = total - starts.pop(), heights.pop()
            if len(container) >= 2:
                known[id(container)] = (count, height)
            if path and heights[-1] <= height:
                heights[-1] = height + 1
            continue
        seen = known.get(id(item))
        if seen is None:
            if len(path) >= MAX_DEPTH:
                raise ModelFileError("not a model file: nesting too deep")
            path.append((item, _items(item)))
            starts.append(total)
            heights.append(1)
            total += 1
        else:
            count, height = seen
            if len(path) + height > MAX_DEPTH:  # its innermost container would lie that deep
                raise ModelFileError("not a model file: nesting too deep")
            if heights[-1] <= height:
                heights[-1] = height + 1
            total += count
        if total > MAX_NODES:
            raise ModelFileError(f"not a model file: more than {MAX_NODES} values")


def _plain(obj, copies: dict[int, object] | None = None):
    """Copy ``obj`` as dicts (str keys), lists, tuples, scalars and numeric arrays; refuse the rest.

    A container of two or more items is copied once, and its further references share the
    copy as they shared the original: copying costs time in proportion to the file.
    """
    if copies is None:
        copies = {}
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
    if kind not in _CONTAINERS:
        raise ModelFileError(
            f"refused a value of type {kind.__name__}: model files may only contain plain data and numeric arrays"
        )
    if id(obj) in copies:
        return copies[id(obj)]
    out: dict[str, Any] | list[Any] | tuple[Any, ...]
    if kind is dict:
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise ModelFileError(f"refused a dictionary key of type {type(key).__name__}")
            if len(key) > MAX_STRING:
                _plain(key)  # refuses it, saying why
            out[key] = _plain(value, copies)
    else:
        items = [_plain(value, copies) for value in obj]
        out = tuple(items) if kind is tuple else items
    if len(obj) >= 2:
        copies[id(obj)] = out
    return out


def safe_loads(data: bytes):
    """Unpickle bytes admitting only plain containers, numbers, strings and numeric arrays."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"file is {len(data)} bytes, above the {MAX_FILE_BYTES}-byte limit")
    if data[:1] != b"\x80":
        what = " (it is a zip archive)" if data.startswith(b"PK\x03\x04") else ""
        raise ModelFileError(
            f"refused: not a model file{what}; it does not start with a pickle header (protocol 3 to 5)"
        )
    if len(data) < 2:
        raise ModelFileError("not a readable model file (truncated)")
    if not 3 <= data[1] <= 5:
        raise ModelFileError(f"unsupported pickle protocol {data[1]} (3 to 5 are read)")
    _scan_opcodes(data)
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), _ArrayBudget(len(data))).load()
    except ModelFileError:
        raise
    except (RecursionError, MemoryError):
        raise ModelFileError("not a model file: it asks for too much memory") from None
    except Exception as e:  # any parse failure of untrusted bytes is the file's fault
        raise ModelFileError(f"not a readable model file ({describe_error(e)})") from None
    _count_values(obj)
    return _plain(obj)
