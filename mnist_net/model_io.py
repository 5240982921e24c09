"""Model files: a pickled plain dict, written atomically, loaded without running code.

Format (``format_version`` 1)::

    {"format_version": 1, "kind": "mnist_net.MLP", "layer_sizes": [784, 128, 64, 10],
     "activation": "sigmoid", "params": {"W1": (784, 128) float32, "b1": (128,), ...},
     "config": TrainConfig as a dict, "history": [progress dicts], "metrics": {...},
     "data_hash": str, "optimizer_state": {name: array}, "epochs_done": int, "info": {...}}

Loading uses a restricted unpickler: the only globals it resolves are NumPy's array
and dtype reconstructors, wrapped so they accept plain numeric dtypes only. Anything
else in the file (``os.system``, ``eval``, object arrays, a class of ours) is refused
before it can run. The original notebook's pickle (``w1, b1, ..., w3, b3``, weights
``(out, in)``, biases ``(out, 1)``, float64, sigmoid) is recognised and converted.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

from .config import ACTIVATIONS, TrainConfig
from .network import MLP

FORMAT_VERSION = 1
MAX_FILE_BYTES = 200 * 1024 * 1024  # far above any sensible MLP; bounds memory on load
MAX_ARRAY_ELEMENTS = 20_000_000
MAX_UNITS = 4096
MAX_LAYERS = 12
_NUMERIC_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


class ModelFileError(ValueError):
    """A model file could not be loaded: corrupt, hostile, or not a model. The message says why."""


# --- restricted unpickling ---------------------------------------------------------------

def _safe_dtype(name, align=False, copy=False):
    dt = np.dtype(name) if isinstance(name, str) else None
    if dt is None or dt.hasobject or dt.kind + str(dt.itemsize) not in _NUMERIC_DTYPES:
        raise ModelFileError(f"refused array dtype {name!r}: only plain numeric arrays are allowed")
    return np.dtype(dt.str)


def _safe_reconstruct(cls, shape, dtype_code):
    # Real pickles pass an empty placeholder; a huge shape here would allocate before checks.
    if cls is not np.ndarray or tuple(shape) != (0,):
        raise ModelFileError("refused a malformed array in the file")
    return np.ndarray.__new__(np.ndarray, (0,), "b")


def _safe_frombuffer(buf, dtype, shape, order):
    dtype = _safe_dtype(dtype.str if isinstance(dtype, np.dtype) else dtype)
    n = math.prod(shape)
    if n > MAX_ARRAY_ELEMENTS or n * dtype.itemsize != len(buf):
        raise ModelFileError("refused an array whose size does not match its data")
    return np.frombuffer(bytes(buf), dtype).reshape(shape, order=order).copy()


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ModelFileError(f"refused to load {module}.{name}: model files may only "
                                 "contain plain data and numeric arrays") from None

    def persistent_load(self, pid):
        raise ModelFileError("refused a persistent reference in the file")


def safe_loads(data: bytes):
    """Unpickle bytes admitting only plain containers, numbers, strings and numeric arrays."""
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"file is {len(data)} bytes, above the {MAX_FILE_BYTES}-byte limit")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
    except ModelFileError:
        raise
    except RecursionError:
        raise ModelFileError("not a model file: nesting too deep") from None
    except MemoryError:
        raise ModelFileError("not a model file: it asks for too much memory") from None
    except Exception as e:  # any parse failure of untrusted bytes is the file's fault
        raise ModelFileError(f"not a readable model file ({type(e).__name__}: {e})"[:300]) from None
    _check_arrays(obj)
    return obj


def _check_arrays(obj, depth: int = 0) -> None:
    """Refuse arrays that slipped through without a plain numeric dtype (e.g. via __setstate__)."""
    if depth > 20:
        raise ModelFileError("not a model file: nesting too deep")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject or obj.dtype.kind not in "fiub" or obj.size > MAX_ARRAY_ELEMENTS:
            raise ModelFileError(f"refused array of dtype {obj.dtype} and size {obj.size}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_arrays(k, depth + 1)
            _check_arrays(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_arrays(v, depth + 1)


# --- validation and conversion -----------------------------------------------------------

def _validated_params(params: dict, n_layers: int) -> dict[str, np.ndarray]:
    """Check keys, shapes chain, dtypes and finiteness; return float32 copies."""
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
        if i > 1 and W.shape[0] != out[f"W{i - 1}"].shape[1]:
            raise ModelFileError(f"W{i} expects {W.shape[0]} inputs but layer {i - 1} "
                                 f"has {out[f'W{i - 1}'].shape[1]} units")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ModelFileError(f"W{i}/b{i} contain NaN or infinite values")
        out[f"W{i}"], out[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
    if out["W1"].shape[0] != 784 or out[f"W{n_layers}"].shape[1] != 10:
        raise ModelFileError("model must map 784 inputs to 10 classes")
    if any(W.shape[1] > MAX_UNITS for k, W in out.items() if k[0] == "W"):
        raise ModelFileError(f"layers are limited to {MAX_UNITS} units")
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
    params = _validated_params(params, 3)
    sizes = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in (1, 2, 3)]
    model = MLP(TrainConfig(hidden_sizes=tuple(sizes[1:-1]), activation="sigmoid", optimizer="sgd",
                            learning_rate=0.01, batch_size=1))
    model.params_ = params
    model.info_ = {"source": "original notebook pickle (w1..b3)"}
    return model


def _from_dict(obj: dict) -> MLP:
    version = obj.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError("not an mnist_net model file (no format_version)")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"model file format {version} is newer than this program supports "
                             f"({FORMAT_VERSION}); upgrade mnist_net to load it")
    if version < 1:
        raise ModelFileError(f"unknown model file format {version}")
    sizes = obj.get("layer_sizes")
    if (not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS
            or not all(isinstance(s, int) and 1 <= s <= MAX_UNITS for s in sizes)):
        raise ModelFileError("layer_sizes must be a list of 2-12 positive ints")
    activation = obj.get("activation")
    if activation not in ACTIVATIONS:
        raise ModelFileError(f"unknown activation {activation!r}")
    params = _validated_params(obj.get("params"), len(sizes) - 1)
    actual = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, len(sizes))]
    if actual != sizes:
        raise ModelFileError(f"layer_sizes {sizes} do not match the parameters {actual}")
    try:
        config = TrainConfig.from_dict({**(obj.get("config") or {}),
                                        "hidden_sizes": tuple(sizes[1:-1]), "activation": activation})
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"invalid training config in file: {e}") from None
    model = MLP(config)
    model.params_ = params
    model.history_ = list(obj.get("history") or [])
    model.metrics_ = dict(obj.get("metrics") or {})
    model.data_hash_ = obj.get("data_hash")
    model.info_ = dict(obj.get("info") or {})
    epochs_done = obj.get("epochs_done", 0)
    model.epochs_done_ = epochs_done if isinstance(epochs_done, int) and epochs_done >= 0 else 0
    state = obj.get("optimizer_state") or {}
    if isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values()):
        # Keep optimizer state only if it matches the parameters (else resume starts it afresh).
        ok = all((k == "t" and v.shape == ()) or (k[2:] in params and v.shape == params[k[2:]].shape)
                 for k, v in state.items())
        model.optimizer_state_ = dict(state) if ok else {}
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
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ModelFileError(f"{path}: {size} bytes is above the {MAX_FILE_BYTES}-byte limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except PermissionError:
        raise ModelFileError(f"{path}: permission denied") from None
    try:
        return model_from_bytes(data)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None


def model_to_dict(model: MLP) -> dict:
    """The plain dict written to disk (see the module docstring)."""
    if model.params_ is None:
        raise ValueError("cannot save a model that has not been fitted")
    return {
        "format_version": FORMAT_VERSION,
        "kind": "mnist_net.MLP",
        "layer_sizes": [int(s) for s in model.layer_sizes],
        "activation": model.activation,
        "params": {k: np.ascontiguousarray(v) for k, v in model.params_.items()},
        "config": model.config.to_dict(),
        "history": [dict(h) for h in model.history_],
        "metrics": dict(model.metrics_),
        "data_hash": model.data_hash_,
        "optimizer_state": {k: np.asarray(v) for k, v in model.optimizer_state_.items()},
        "epochs_done": int(model.epochs_done_),
        "info": dict(model.info_),
    }


def model_to_bytes(model: MLP) -> bytes:
    # Protocol 4: arrays go in-band via _reconstruct, which the loader knows.
    return pickle.dumps(model_to_dict(model), protocol=4)


def save_model(model: MLP, path: str | os.PathLike) -> Path:
    """Write atomically: a temp file in the same directory, fsync, then rename over the target.

    A crash or full disk mid-write leaves any existing file at ``path`` intact and no
    partial file under the final name.
    """
    path = Path(path)
    data = model_to_bytes(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
