"""Model files: a pickled plain dict, written atomically, loaded without running code.

Format (``format_version`` 2)::

    {"format_version": 2, "kind": "mnist_net.MLP", "layers": "" or a layer spec,
     "layer_sizes": [784, 128, 64, 10], "activation": "sigmoid",
     "params": {"W1": (784, 128) float32, "b1": (128,), ...},
     "config": TrainConfig as a dict, "history": [progress dicts], "metrics": {...},
     "data_hash": str, "optimizer_state": {name: array}, "epochs_done": int, "info": {...},
     "fine_tune": None or {...}}

``fine_tune`` (optional, added without a version bump: older readers ignore it) says what a
fine-tuned model (``finetune.fine_tune``) was tuned on: ``base_sha256`` (the base model's file
bytes), ``personal_counts`` (10 ints: personal digits per class), ``options`` (flat numbers),
``steps_done``, ``stopped``, ``seconds``, ``tuned_at`` and ``figures`` (accuracies before/after
on held-out personal digits and on a test set, with their sizes). Checked key by key on load.

``layers`` (new in version 2) is the canonical layer spec (``architecture``), e.g. "conv
32x5x5 -> pool 2 -> ... -> dense 10", with a conv's W{i} (kh, kw, c_in, c_out); "" means an
MLP, described by ``layer_sizes`` exactly as in version 1 (which has no ``layers``). For a spec,
``layer_sizes`` is the number of values each layer outputs per image (shown, never trusted).

Model files come from strangers (uploads), so loading trusts nothing in them: the file
is read with a bounded read from a regular file, unpickled by ``safe_pickle.safe_loads``
(plain data and numeric arrays only; nothing in the file runs), then checked field by
field: shapes chain 784 -> ... -> 10 (a spec's weights have exactly the shapes its layers
imply, within the spec's bounds on channels, kernels, parameters and memory), weights finite
and small enough that no input in [0, 1] can overflow the logits, config values of the right types, optimizer state
matching the weights.

The original notebook's pickle (``w1, b1, ..., w3, b3``, weights ``(out, in)``, biases
``(out, 1)``, float64, sigmoid) is recognised and converted. Non-goals: other model
kinds, signatures (files are validated, not authenticated), pickle protocols below 3.
"""

from __future__ import annotations

import math
import os
import pickle
import stat
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .architecture import Layer, format_layers, layer_shapes, param_shapes, parse_layers
from .config import ACTIVATIONS, MAX_HIDDEN_LAYERS, MAX_UNITS, TrainConfig
from .files import write_atomic
from .history import Progress, thin_history
from .network import MLP
from .optim import state_problem
from .safe_pickle import MAX_FILE_BYTES, MAX_INT, ModelFileError, describe_error, safe_loads, short_repr

FORMAT_VERSION = 2  # 2: a layer spec (CNNs); 1: MLPs only, still read
KIND = "mnist_net.MLP"
MAX_LAYERS = MAX_HIDDEN_LAYERS + 2  # layer_sizes counts the input and the output too
MAX_EPOCHS_DONE = 1_000_000
MAX_SPEC_TEXT = 1000  # characters of a layer spec (architecture.MAX_SPEC_CHARS)
MAX_LOGIT = 1e30  # float32 overflows at 3.4e38; a trained MLP's logits are below 1e3


# --- what the data must mean ---------------------------------------------------------------


def _validated_params(params, n_layers: int, activation: str) -> dict[str, np.ndarray]:
    """Check keys, shapes chain, dtypes, finiteness and overflow; return float32 arrays."""
    expected = {f"{p}{i}" for i in range(1, n_layers + 1) for p in "Wb"}
    if not isinstance(params, dict) or set(params) != expected:
        raise ModelFileError(f"parameters must be exactly {sorted(expected)}")
    out: dict[str, np.ndarray] = {}
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
            raise ModelFileError(
                f"W{i} expects {W.shape[0]} inputs but layer {i - 1} has {out[f'W{i - 1}'].shape[1]} units"
            )
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


def _validated_layer_params(params, layers: tuple[Layer, ...], activation: str) -> dict[str, np.ndarray]:
    """A layer spec's weights: exactly the keys and shapes its layers imply, finite float32, no overflow."""
    shapes = param_shapes(layers)
    expected = {f"{p}{i}" for i in range(1, len(shapes) + 1) for p in "Wb"}
    if not isinstance(params, dict) or set(params) != expected:
        raise ModelFileError(f"parameters must be exactly {sorted(expected)} for layers {format_layers(layers)}")
    out: dict[str, np.ndarray] = {}
    for i, (w_shape, b_shape) in enumerate(shapes, start=1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        if not (isinstance(W, np.ndarray) and isinstance(b, np.ndarray)):
            raise ModelFileError(f"W{i}/b{i} must be arrays")
        if W.dtype.kind != "f" or b.dtype.kind != "f":
            raise ModelFileError(f"W{i}/b{i} must be float arrays, got {W.dtype}/{b.dtype}")
        if W.shape != w_shape or b.shape != b_shape:
            raise ModelFileError(
                f"W{i} {W.shape} / b{i} {b.shape} do not fit the layers: expected {w_shape} / {b_shape}"
            )
        with np.errstate(over="ignore"):
            W32, b32 = W.astype(np.float32), b.astype(np.float32)
        if not (np.all(np.isfinite(W32)) and np.all(np.isfinite(b32))):
            raise ModelFileError(f"W{i}/b{i} contain NaN or infinite values")
        out[f"W{i}"], out[f"b{i}"] = np.ascontiguousarray(W32), np.ascontiguousarray(b32)
    if layer_logit_bound(out, activation, layers) > MAX_LOGIT:
        raise ModelFileError("weights are so large that predictions would overflow")
    return out


def layer_logit_bound(params: dict[str, np.ndarray], activation: str, layers: tuple[Layer, ...]) -> float:
    """``logit_bound`` through any layers: a bound per channel through convs (|W| summed over the
    kernel and input channels; zero padding only lowers it), kept by pools and by dropout (off at
    prediction), tiled over the pixels when a dense layer flattens an image (NHWC order)."""
    shapes = layer_shapes(layers)
    bound = np.ones(shapes[0][-1])  # per channel of an image, or per input of a dense layer
    worst, p = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for i, (layer, before) in enumerate(zip(layers, shapes[:-1])):
            if not layer.has_params:
                continue
            p += 1
            W, b = np.abs(params[f"W{p}"].astype(np.float64)), np.abs(params[f"b{p}"].astype(np.float64))
            if layer.kind == "conv":
                z = np.einsum("ijcd,c->d", W, bound) + b
            else:
                if len(before) == 3:
                    bound = np.tile(bound, before[0] * before[1])
                z = bound @ W + b
            worst = max(worst, float(np.max(z)) if np.all(np.isfinite(z)) else math.inf)
            last = i == len(layers) - 1
            bound = np.ones_like(z) if activation == "sigmoid" and not last else z
    return worst


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
        raise ModelFileError(f"{where} is {short_repr(value)}, expected {annotation}")


def _checked_config(config, sizes: list[int], activation: str, layers: str = "") -> TrainConfig:
    """TrainConfig from the file's dict; unknown keys are ignored (later minor additions).

    The architecture comes from the file's own fields: ``sizes`` for an MLP, ``layers`` for a spec.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ModelFileError("config must be a dictionary")
    known = {f.name: f for f in fields(TrainConfig)}
    values = {}
    for name, value in config.items():
        if name in known and name not in ("hidden_sizes", "activation", "layers"):
            _check_type(value, str(known[name].type), f"config {name}")
            values[name] = value
    if values.get("seed", 0) < 0:
        raise ModelFileError("config seed must be >= 0")
    if not layers:
        values["hidden_sizes"] = tuple(sizes[1:-1])
    try:
        return TrainConfig(**values, activation=activation, layers=layers)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"invalid training config in file: {describe_error(e)}") from None


_SCALARS = (type(None), bool, int, float, str)


def _checked_history(history) -> list[dict]:
    """Progress records as flat dicts; the fields the charts read must have their types."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise ModelFileError("history must be a list")
    if len(history) > MAX_HISTORY:
        raise ModelFileError(f"history has {len(history)} records; at most {MAX_HISTORY} are allowed")
    annotations = {f.name: str(f.type) for f in fields(Progress)}
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not all(type(v) in _SCALARS for v in record.values()):
            raise ModelFileError(f"history record {i} is not a flat dictionary")
        if any(type(v) is str and len(v) > MAX_HISTORY_TEXT for v in record.values()) or any(
            type(k) is not str or len(k) > MAX_META_KEY for k in record
        ):
            raise ModelFileError(f"history record {i} holds text longer than {MAX_HISTORY_TEXT} characters")
        if not {"epoch", "batch", "batches_per_epoch"} <= set(record):
            raise ModelFileError(f"history record {i} lacks epoch/batch/batches_per_epoch")
        for name, value in record.items():
            if name in annotations:
                # A diverged run legitimately records a NaN loss, so floats may be non-finite here.
                ann = annotations[name].replace("float", "number")
                if not (value is None and "None" in ann) and not {
                    "int": type(value) is int,
                    "number": type(value) in (int, float),
                    "str": type(value) is str,
                    "bool": type(value) is bool,
                }.get(ann.split("|")[0].strip(), True):
                    raise ModelFileError(f"history record {i}: {name} is {short_repr(value)}")
    return [dict(r) for r in history]


MAX_META_KEYS = 32  # per metrics / info dict; ours have 3 and 5
MAX_META_KEY = 64  # characters in a metadata key
MAX_META_TEXT = 4000  # characters in one metadata string (a long command line fits)
MAX_META_TOTAL = 20_000  # characters of metadata strings in all
MAX_META_LIST = 64  # items in a list in metadata
MAX_META_ARRAY = 100_000  # elements of an array in metadata
# Progress records in a file: ~28 values each, so 30,000 stay well inside the loader's 1M values.
# Saving thins a longer history to SAVED_HISTORY records, every epoch record kept.
MAX_HISTORY = 30_000
SAVED_HISTORY = 20_000
MAX_HISTORY_TEXT = 32  # characters in a history string (only "batch" / "epoch")
# Known metadata fields and what each must be; other keys may hold short plain scalars.
_FRACTION, _SECONDS, _TIME, _TEXT, _FLAG = (
    "a fraction in [0, 1]",
    "a number of seconds",
    "an ISO date and time",
    "text",
    "true or false",
)
_KNOWN_METRICS = {"test_accuracy": _FRACTION, "val_accuracy": _FRACTION, "train_seconds": _SECONDS}
_KNOWN_INFO = {"trained_at": _TIME, "source": _TEXT, "command": _TEXT, "stopped_early": _FLAG}


def _plausible_time(text: str) -> bool:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return False
    return 1970 <= when.year <= 2200


def _valid_meta_value(value, kind: str) -> bool:
    if value is None:
        return True
    if kind == _FRACTION:
        return type(value) in (int, float) and 0 <= value <= 1
    if kind == _SECONDS:
        return type(value) in (int, float) and 0 <= value <= 1e9
    if kind == _FLAG:
        return type(value) is bool
    if kind == _TIME:
        return type(value) is str and len(value) <= 40 and _plausible_time(value)
    if kind == _TEXT:
        return type(value) is str
    # Other keys: a plain scalar, a short flat list of them, or a small numeric array (data, never shown).
    if type(value) in (list, tuple):
        return len(value) <= MAX_META_LIST and all(_valid_meta_value(v, "scalar") for v in value)
    if isinstance(value, np.ndarray):
        return kind == "other" and value.size <= MAX_META_ARRAY
    return type(value) in (bool, int, str) or (type(value) is float and math.isfinite(value))


def _texts(value) -> list[str]:
    """The strings in a metadata value (itself, or the items of a list)."""
    if type(value) is str:
        return [value]
    return [v for v in value if type(v) is str] if type(value) in (list, tuple) else []


def _checked_metadata(value, name: str, known: dict[str, str]) -> dict[str, Any]:
    """A metrics / info dict of bounded plain scalars; known fields of their kind (type, length, range).

    Loaded values are later shown to every visitor of the app, so their size is bounded here,
    where it is cheap: a string repeated by shared references is never expanded.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelFileError(f"{name} must be a dictionary")
    if len(value) > MAX_META_KEYS:
        raise ModelFileError(f"{name} has {len(value)} entries; at most {MAX_META_KEYS} are allowed")
    total = 0
    for key, item in value.items():
        if type(key) is not str or len(key) > MAX_META_KEY:
            raise ModelFileError(f"{name} has a key that is not a short name: {short_repr(key)}")
        if not _valid_meta_value(item, known.get(key, "other")):
            expected = known.get(key, "a plain number, text or true/false")
            raise ModelFileError(f"{name} {key} is {short_repr(item)}, expected {expected}")
        for text in _texts(item):
            if len(text) > MAX_META_TEXT:
                raise ModelFileError(f"{name} {key} holds {len(text)} characters of text; at most {MAX_META_TEXT}")
            total += len(text)  # a string shared by many references counts each time
    if total > MAX_META_TOTAL:
        raise ModelFileError(f"{name} holds {total} characters of text; at most {MAX_META_TOTAL}")
    return dict(value)


def _checked_optimizer_state(state, params: dict[str, np.ndarray], optimizer: str) -> dict[str, np.ndarray]:
    """The optimizer's arrays, complete for ``optimizer`` (``optim.state_problem``), as float32 / int64."""
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise ModelFileError("optimizer_state must be a dictionary")
    out = {}
    for key, value in state.items():
        if type(key) is not str or not isinstance(value, np.ndarray):
            raise ModelFileError(f"optimizer state {short_repr(key)} is not a named array")
        if key == "t":
            if value.shape != () or value.dtype.kind not in "iu" or not 0 <= int(value) < MAX_INT:
                raise ModelFileError("optimizer step count t must be a non-negative integer")
            out[key] = value.astype(np.int64)
            continue
        prefix, _, name = key.partition("_")
        if prefix not in ("m", "v") or name not in params or value.shape != params[name].shape:
            raise ModelFileError(f"optimizer state {short_repr(key)} does not match the parameters")
        with np.errstate(over="ignore"):
            value = value.astype(np.float32) if value.dtype.kind == "f" else value
        # Adam's second moment is never negative; momentum's velocity may be (state_problem knows which).
        if (
            value.dtype.kind != "f"
            or not np.all(np.isfinite(value))
            or (optimizer == "adam" and prefix == "v" and value.min() < 0)
        ):
            raise ModelFileError(f"optimizer state {key} holds invalid values")
        out[key] = value
    problem = state_problem(optimizer, out, params)
    if problem:
        raise ModelFileError(f"cannot resume training from this file: {problem}")
    return out


_FINE_TUNE_KEYS = {
    "base_sha256",
    "personal_counts",
    "options",
    "steps_done",
    "stopped",
    "seconds",
    "tuned_at",
    "figures",
}
_FIGURE_KEYS = {f"{part}_{what}" for part in ("held_out", "test") for what in ("n", "before", "after")}
MAX_TUNED_DIGITS = 5_000  # digitset.MAX_DIGITS: a fine-tune's personal digits
MAX_TUNE_STEPS = 1_000_000


def _checked_fine_tune(value) -> dict[str, Any] | None:
    """A fine-tuned model's record (module docstring): exactly the known keys, each of its kind."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != _FINE_TUNE_KEYS:
        raise ModelFileError(f"fine_tune must be a dictionary of exactly {sorted(_FINE_TUNE_KEYS)}")
    sha = value["base_sha256"]
    if type(sha) is not str or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelFileError("fine_tune base_sha256 must be 64 lowercase hex digits")
    counts = value["personal_counts"]
    if (
        type(counts) is not list
        or len(counts) != 10
        or not all(type(c) is int and 0 <= c <= MAX_TUNED_DIGITS for c in counts)
        or not 1 <= sum(counts) <= MAX_TUNED_DIGITS
    ):
        raise ModelFileError(f"fine_tune personal_counts must be 10 counts adding up to 1..{MAX_TUNED_DIGITS}")
    steps, seconds = value["steps_done"], value["seconds"]
    if type(steps) is not int or not 0 <= steps <= MAX_TUNE_STEPS:
        raise ModelFileError(f"fine_tune steps_done must be an int in 0..{MAX_TUNE_STEPS}")
    if type(value["stopped"]) is not bool:
        raise ModelFileError("fine_tune stopped must be true or false")
    if not _valid_meta_value(seconds, _SECONDS) or seconds is None:
        raise ModelFileError("fine_tune seconds must be a number of seconds")
    if not _valid_meta_value(value["tuned_at"], _TIME) or value["tuned_at"] is None:
        raise ModelFileError("fine_tune tuned_at must be an ISO date and time")
    options = value["options"]
    if not isinstance(options, dict) or len(options) > MAX_META_KEYS:
        raise ModelFileError(f"fine_tune options must be a dictionary of at most {MAX_META_KEYS} entries")
    for key, item in options.items():
        items = item if type(item) is list and len(item) <= 2 else [item]
        plain = all(
            v is None
            or (type(v) is str and len(v) <= MAX_META_KEY)
            or (type(v) in (bool, int) and abs(v) < 2**63)
            or (type(v) is float and math.isfinite(v))
            for v in items
        )
        if type(key) is not str or len(key) > MAX_META_KEY or not plain:
            raise ModelFileError(
                f"fine_tune option {short_repr(key)} is {short_repr(item)}, expected a number or a name"
            )
    figures = value["figures"]
    if not isinstance(figures, dict) or not set(figures) <= _FIGURE_KEYS:
        raise ModelFileError(f"fine_tune figures may only hold {sorted(_FIGURE_KEYS)}")
    for key, item in figures.items():
        ok = (type(item) is int and 0 <= item <= 10**8) if key.endswith("_n") else _valid_meta_value(item, _FRACTION)
        if not ok:
            raise ModelFileError(f"fine_tune figure {key} is {short_repr(item)}")
    return {**value, "personal_counts": list(counts), "options": dict(options), "figures": dict(figures)}


def _is_notebook_format(obj) -> bool:
    return isinstance(obj, dict) and set(obj) == {"w1", "b1", "w2", "b2", "w3", "b3"}


def _from_notebook(obj: dict) -> MLP:
    """The seed notebook's dict: weights (out, in), biases (out, 1), sigmoid hidden layers."""
    params = {}
    for i in (1, 2, 3):
        w, b = obj[f"w{i}"], obj[f"b{i}"]
        if not (isinstance(w, np.ndarray) and isinstance(b, np.ndarray) and w.ndim == 2 and b.shape == (w.shape[0], 1)):
            raise ModelFileError(f"notebook model: w{i}/b{i} have the wrong shapes")
        params[f"W{i}"], params[f"b{i}"] = w.T, b[:, 0]
    params = _validated_params(params, 3, "sigmoid")
    hidden = tuple(params[f"W{i}"].shape[1] for i in (1, 2))
    config = TrainConfig(hidden_sizes=hidden, activation="sigmoid", optimizer="sgd", learning_rate=0.01, batch_size=1)
    return MLP.from_state({"params": params, "config": config, "info": {"source": "original notebook pickle (w1..b3)"}})


def _from_dict(obj: dict) -> MLP:
    version = obj.get("format_version")
    if type(version) is not int:
        raise ModelFileError("not an mnist_net model file (no format_version)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model file format {version} is newer than this program supports "
            f"({FORMAT_VERSION}); upgrade mnist_net to load it"
        )
    if version < 1:
        raise ModelFileError(f"unknown model file format {version}")
    if obj.get("kind", KIND) != KIND:
        raise ModelFileError(f"not an mnist_net model: kind is {short_repr(obj.get('kind'))}")
    layers_text = obj.get("layers", "") if version >= 2 else ""
    if type(layers_text) is not str or len(layers_text) > MAX_SPEC_TEXT:
        raise ModelFileError(f"layers must be a layer spec of at most {MAX_SPEC_TEXT} characters")
    activation = obj.get("activation")
    if layers_text:
        if activation not in ACTIVATIONS:
            raise ModelFileError(f"unknown activation {short_repr(activation)}")
        try:
            layers = parse_layers(layers_text)
        except ValueError as e:
            raise ModelFileError(f"invalid layers in file: {describe_error(e)}") from None
        params = _validated_layer_params(obj.get("params"), layers, activation)
        sizes: list[int] = [math.prod(shape) for shape in layer_shapes(layers)]
        if obj.get("layer_sizes", sizes) != sizes:
            raise ModelFileError(f"layer_sizes {short_repr(obj.get('layer_sizes'))} do not match the layers {sizes}")
        config = _checked_config(obj.get("config"), sizes, activation, format_layers(layers))
    else:
        sizes = obj.get("layer_sizes")  # type: ignore[assignment]
        if (
            not isinstance(sizes, list)
            or not 2 <= len(sizes) <= MAX_LAYERS
            or not all(type(s) is int and 1 <= s <= MAX_UNITS for s in sizes)
        ):
            raise ModelFileError(f"layer_sizes must be a list of 2-{MAX_LAYERS} ints in 1..{MAX_UNITS}")
        if activation not in ACTIVATIONS:
            raise ModelFileError(f"unknown activation {short_repr(activation)}")
        params = _validated_params(obj.get("params"), len(sizes) - 1, activation)
        actual = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, len(sizes))]
        if actual != sizes:
            raise ModelFileError(f"layer_sizes {sizes} do not match the parameters {actual}")
        config = _checked_config(obj.get("config"), sizes, activation)
    history = _checked_history(obj.get("history"))
    metrics = _checked_metadata(obj.get("metrics"), "metrics", _KNOWN_METRICS)
    info = _checked_metadata(obj.get("info"), "info", _KNOWN_INFO)
    data_hash = obj.get("data_hash")
    if data_hash is not None and (type(data_hash) is not str or len(data_hash) > 128):
        raise ModelFileError("data_hash must be a short string")
    epochs_done = obj.get("epochs_done", 0)
    if type(epochs_done) is not int or not 0 <= epochs_done <= MAX_EPOCHS_DONE:
        raise ModelFileError(f"epochs_done must be an int in 0..{MAX_EPOCHS_DONE}")
    return MLP.from_state(
        {
            "params": params,
            "config": config,
            "history": history,
            "metrics": metrics,
            "info": info,
            "data_hash": data_hash,
            "epochs_done": epochs_done,
            "optimizer_state": _checked_optimizer_state(obj.get("optimizer_state"), params, config.optimizer),
            "fine_tune": _checked_fine_tune(obj.get("fine_tune")),
        }
    )


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


def model_to_dict(model: MLP) -> dict[str, Any]:
    """The plain dict written to disk (see the module docstring): the model's state, versioned."""
    if model.params_ is None:
        raise ValueError("cannot save a model that has not been fitted")
    state = model.state_dict()
    state["history"] = thin_history(state["history"], SAVED_HISTORY)
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        **{k: v if k in ("params", "optimizer_state") else _plain_for_saving(v) for k, v in state.items()},
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


def save_model(model: MLP, path: str | os.PathLike) -> Path:
    """Write a model file atomically (``files.write_atomic``): a crash, kill or full disk
    mid-write leaves any existing file at ``path`` intact and no partial file under the name.

    Raises OSError (with its errno, e.g. ENOSPC) naming the path, or ModelFileError if the
    model is not savable (it would not load back).
    """
    return write_atomic(path, model_to_bytes(model), what="model")
