"""Command line: ``python -m mnist_net train | evaluate | predict | finetune``.

``finetune MODEL DIGITS.npz --out NEW.pkl`` teaches a model a person's digit set
(``finetune.fine_tune``); ``evaluate MODEL --digits DIGITS.npz`` scores a model on one.

Errors are one readable line on stderr and a non-zero exit code, never a traceback:
1 for a failed run (bad data, bad model file), 2 for bad usage (argparse's own).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from .architecture import PRESETS, parse_layers
from .budget import estimate_training_cost
from .config import ACTIVATIONS, OPTIMIZERS, TrainConfig, parse_hidden_sizes, preset_layers
from .data import MnistError, load_mnist
from .digitset import DigitSet, DigitSetError, load_digit_set
from .finetune import FineTuneOptions, accuracy_by_class, fine_tune, split_held_out
from .history import Progress
from .metrics import confusion_matrix, per_class_accuracy
from .model_io import ModelFileError, load_model, save_model
from .network import MLP
from .preprocess import canvas_to_input
from .registry import save_rescue_copy
from .uploads import image_from_bytes

MAX_CLI_SECONDS = 7 * 86400  # a run estimated (budget.py, errs high) to take longer is refused before it starts


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        return parse_hidden_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _layers(text: str) -> str:
    try:
        parse_layers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _float_pair(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}") from None
    return lo, hi


def _format_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


def _progress_line(p: Progress) -> str:
    width = 24
    done = int(width * p.fraction_done)
    bar = "#" * done + "-" * (width - done)
    val = f" val_acc {p.val_acc:.4f}" if p.val_acc is not None else ""
    return (
        f"\repoch {p.epoch}/{p.epochs} [{bar}] {100 * p.fraction_done:5.1f}% "
        f"loss {p.loss:.4f} acc {p.train_acc:.4f}{val} "
        f"{p.samples_per_s:,.0f} img/s ETA {_format_seconds(p.eta)}"
    )


def _data(args):
    try:
        return load_mnist(args.data_dir, download=not args.no_download, progress=True)
    except MnistError as e:
        raise CliError(str(e)) from None


def _config_from_args(args) -> TrainConfig:
    defaults = TrainConfig()
    values = {}
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        values[f.name] = getattr(defaults, f.name) if v is None else v
    if args.arch is not None and args.layers is not None:
        raise CliError("give --arch or --layers, not both")
    if args.arch is not None:
        values["layers"] = preset_layers(args.arch)
    if values["layers"] and args.hidden_sizes is not None:
        raise CliError("--hidden sizes an MLP; with --arch cnn or --layers, write dense layers into the spec")
    if values["layers"] and args.activation is None:
        values["activation"] = "relu"  # a conv network with the notebook's sigmoid barely trains
    try:
        return TrainConfig(**values)
    except ValueError as e:
        raise CliError(f"invalid option: {e}") from None


def _check_writable(out: Path) -> None:
    """Refuse an --out that cannot be written *before* training, not after an hour of it."""
    if out.is_dir():
        raise CliError(f"--out {out} is a directory; give a file name such as {out / 'model.pkl'}")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.{os.getpid()}-", suffix=".tmp"):
            pass
    except OSError as e:
        raise CliError(f"cannot write --out {out}: {e.strerror or e}") from None


def _save_or_rescue(model: MLP, out: Path) -> Path:
    """Save to ``out``; if that fails, save a copy where it can be found and say so. Never lose the model."""
    try:
        return save_model(model, out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
    try:
        rescued = save_rescue_copy(model)
    except OSError as e:
        raise CliError(f"the trained model could not be saved anywhere: {e}") from None
    raise CliError(f"could not save to {out}; the trained model was saved to {rescued} instead")


def cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not (args.force or args.resume and Path(args.resume).resolve() == out.resolve()):
        raise CliError(f"{out} exists; pass --force to overwrite it")
    _check_writable(out)
    if args.resume:
        model = _load(args.resume)
        extra = {
            f.name: getattr(args, f.name)
            for f in fields(TrainConfig)
            if getattr(args, f.name, None) is not None and f.name not in ("hidden_sizes", "activation", "layers")
        }
        if args.arch is not None or args.layers is not None or args.hidden_sizes is not None:
            print(
                "note: --resume keeps the saved network's layers; --arch/--layers/--hidden are ignored", file=sys.stderr
            )
        try:
            config = TrainConfig(**{**model.config.to_dict(), **extra})
        except ValueError as e:
            raise CliError(f"invalid option: {e}") from None
        if config.optimizer != model.config.optimizer and model.optimizer_state_:
            print(
                f"note: switching from {model.config.optimizer} to {config.optimizer}: "
                "its optimizer state starts afresh",
                file=sys.stderr,
            )
            model.optimizer_state_ = {}
        model.config = config
    else:
        model = MLP(_config_from_args(args))
    cost = estimate_training_cost(model.config, 60_000)
    if cost.seconds > MAX_CLI_SECONDS:
        raise CliError(
            f"this run would take {cost.describe()} here (more than {MAX_CLI_SECONDS / 86400:.0f} days): "
            "use fewer epochs, fewer images or smaller layers"
        )
    data = _data(args)
    if args.resume and model.data_hash_ not in (None, data.data_hash):
        print("warning: the model was trained on different data", file=sys.stderr)
    cfg = model.config
    sizes = model.architecture
    print(
        f"training {sizes} {cfg.activation}, {cfg.optimizer} lr={cfg.learning_rate}, batch {cfg.batch_size}, "
        f"{cfg.epochs} epochs, augment={'on' if cfg.augment else 'off'}, seed {cfg.seed}",
        file=sys.stderr,
    )
    started = time.time()
    stop_requested = []

    def request_stop(signum, frame):
        # First Ctrl-C: finish the current batch, then save. A second one aborts as usual.
        stop_requested.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\nstopping after this batch; the model trained so far will be saved "
            "(Ctrl-C again to abort without saving)",
            file=sys.stderr,
        )

    previous_handler = signal.signal(signal.SIGINT, request_stop)
    try:
        for p in model.iter_fit(data.X_train, data.y_train, stop=lambda: bool(stop_requested)):
            if not args.quiet or p.stopped:
                end = "\n" if p.kind == "epoch" or p.stopped else ""
                print(_progress_line(p), end=end, file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    interrupted = bool(stop_requested)
    test_acc = model.score(data.X_test, data.y_test)
    model.record_results(
        test_acc,
        time.time() - started,
        data.data_hash,
        "command line",
        interrupted,
        command=f"{args.prog} " + " ".join(shlex.quote(a) for a in args.argv),
    )
    _save_or_rescue(model, out)
    print(f"test accuracy {test_acc:.4f}; saved {out}")
    return 130 if interrupted else 0


def _load(path) -> MLP:
    try:
        return load_model(path)
    except ModelFileError as e:
        raise CliError(str(e)) from None


def _digits(path) -> DigitSet:
    try:
        return load_digit_set(path)
    except DigitSetError as e:
        raise CliError(str(e)) from None


def _describe_tuning(model: MLP) -> str | None:
    """One line on what a fine-tuned model was tuned on, or None for a model that was not."""
    record = model.fine_tune_
    if record is None:
        return None
    counts = record["personal_counts"]
    return (
        f"fine-tuned on {sum(counts)} personal digits (per class {' '.join(map(str, counts))}) "
        f"from base model sha256 {record['base_sha256'][:16]}..., {record['steps_done']} steps"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load(args.model)
    name = args.model if args.model is not None else "the shipped default model"
    if args.digits is not None:
        return _evaluate_digits(model, name, args.digits)
    data = _data(args)
    cm = confusion_matrix(data.y_test, model.predict(data.X_test))
    acc = float(np.trace(cm) / cm.sum())
    print(f"model: {name} ({model.architecture}, {model.activation})")
    tuning = _describe_tuning(model)
    if tuning:
        print(tuning)
    print(f"test accuracy: {acc:.4f} ({np.trace(cm)}/{cm.sum()})")
    print("per-class accuracy:")
    for d, a in enumerate(per_class_accuracy(cm)):
        print(f"  {d}: {a:.4f}")
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("      " + " ".join(f"{d:>5}" for d in range(10)))
    for d in range(10):
        print(f"  {d}:  " + " ".join(f"{c:>5}" for c in cm[d]))
    return 0


def _evaluate_digits(model: MLP, name: str, path: str) -> int:
    """Accuracy of a model on a personal digit set, overall and per class (no MNIST needed)."""
    ds = _digits(path)
    if len(ds) == 0:
        raise CliError(f"{path} holds no digits")
    right = model.predict(ds.inputs) == ds.labels
    print(f"model: {name} ({model.architecture}, {model.activation})")
    tuning = _describe_tuning(model)
    if tuning:
        print(tuning)
    print(f"accuracy on {path}: {right.mean():.4f} ({int(right.sum())}/{len(ds)})")
    print("per-class accuracy (digits in the set):")
    counts, per_class = ds.counts(), accuracy_by_class(model, ds)
    for d in range(10):
        shown = "   -  " if counts[d] == 0 else f"{per_class[d]:.4f}"
        print(f"  {d}: {shown} ({counts[d]})")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists; pass --force to overwrite it")
    _check_writable(out)
    model = _load(args.model)
    ds = _digits(args.digits)
    if len(ds) == 0:
        raise CliError(f"{args.digits} holds no digits: collect some first")
    changes = {
        name: getattr(args, name)
        for name in ("steps", "learning_rate", "anchor", "personal_fraction", "batch_size", "seed", "threads")
        if getattr(args, name) is not None
    }
    try:
        options = FineTuneOptions(**{**FineTuneOptions().to_dict(), **changes})
    except ValueError as e:
        raise CliError(f"invalid option: {e}") from None
    try:
        train_idx, held_idx = split_held_out(ds.labels, args.held_out, options.seed)
    except ValueError as e:
        raise CliError(f"--held-out: {e}") from None
    tune_set, held = ds.subset(train_idx), ds.subset(held_idx)
    data = _data(args)
    print(
        f"fine-tuning {model.architecture} on {len(tune_set)} digits (per class "
        f"{' '.join(map(str, tune_set.counts()))}), {len(held)} held out; {options.steps} steps",
        file=sys.stderr,
    )
    stop_requested: list[bool] = []

    def request_stop(signum, frame):
        stop_requested.append(True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping now; the model tuned so far will be saved (Ctrl-C again to abort)", file=sys.stderr)

    def show(fraction: float) -> None:
        if not args.quiet:
            bar = "#" * int(24 * fraction) + "-" * (24 - int(24 * fraction))
            print(f"\rfine-tuning [{bar}] {100 * fraction:5.1f}%", end="", file=sys.stderr, flush=True)

    previous_handler = signal.signal(signal.SIGINT, request_stop)
    try:
        tuned = fine_tune(
            model,
            tune_set.inputs,
            tune_set.labels,
            options=options,
            rehearsal=(data.X_train, data.y_train),
            held_out=(held.inputs, held.labels) if len(held) else None,
            test=(data.X_test, data.y_test),
            progress=show,
            stop=lambda: bool(stop_requested),
        )
    except ValueError as e:
        raise CliError(str(e)) from None
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if not args.quiet:
            print(file=sys.stderr)
    tuned.data_hash_ = data.data_hash
    tuned.info_["command"] = f"{args.prog} " + " ".join(shlex.quote(a) for a in args.argv)
    _save_or_rescue(tuned, out)
    assert tuned.fine_tune_ is not None
    figures = tuned.fine_tune_["figures"]
    if "held_out_before" in figures:
        print(
            f"held-out personal digits ({figures['held_out_n']}): accuracy "
            f"{figures['held_out_before']:.4f} -> {figures['held_out_after']:.4f}"
        )
    print(f"MNIST test accuracy {figures['test_before']:.4f} -> {figures['test_after']:.4f}")
    print(f"{tuned.fine_tune_['steps_done']} steps in {tuned.fine_tune_['seconds']:.1f} s; saved {out}")
    return 130 if stop_requested else 0


def cmd_predict(args: argparse.Namespace) -> int:
    model = _load(args.model)
    status = 0
    for name in args.images:
        try:
            data = Path(name).read_bytes()
            x = canvas_to_input(image_from_bytes(data))
        except (OSError, ValueError) as e:
            print(f"{name}: error: {e}", file=sys.stderr)
            status = 1
            continue
        if x is None:
            print(f"{name}: no digit found (the image is blank)")
            continue
        proba = model.predict_proba(x[None])[0]
        top = int(np.argmax(proba))
        probs = " ".join(f"{d}:{p:.3f}" for d, p in enumerate(proba))
        print(f"{name}: {top} (p={proba[top]:.3f})  [{probs}]")
    return status


def build_parser(prog: str = "mnist-net") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train, evaluate and use a from-scratch NumPy MNIST network."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,finetune}")
    data_opts = argparse.ArgumentParser(add_help=False)
    data_opts.add_argument(
        "--data-dir", help="folder with the four MNIST .gz files (default: $MNIST_DIR, then the per-user cache)"
    )
    data_opts.add_argument("--no-download", action="store_true", help="never download MNIST")

    d = TrainConfig()
    t = sub.add_parser(
        "train",
        parents=[data_opts],
        help="train a network on MNIST and save it",
        description="Train a network on the MNIST training set and save it as a model file.",
    )
    t.add_argument("--out", "-o", default="model.pkl", help="output model file (default: model.pkl)")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.add_argument("--resume", metavar="MODEL", help="continue training a saved model for --epochs more epochs")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    t.add_argument(
        "--hidden",
        dest="hidden_sizes",
        type=_hidden_sizes,
        help=f"hidden layer sizes, comma-separated (default: {','.join(map(str, d.hidden_sizes))})",
    )
    t.add_argument(
        "--arch",
        choices=("mlp", *PRESETS),
        help=f"network: mlp (of --hidden, the default) or a preset, cnn: {PRESETS['cnn']}",
    )
    t.add_argument(
        "--layers",
        type=_layers,
        help='the network as a layer spec, e.g. "conv 16x5x5 -> pool 2 -> dense 128 -> dropout 0.2 -> dense 10" '
        "(conv CxKxK [valid], pool P, dense N, dropout R; the last is dense 10)",
    )
    t.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        help=f"hidden activation (default: {d.activation}; relu with --arch cnn or --layers)",
    )
    t.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    t.add_argument("--lr", dest="learning_rate", type=float, help=f"learning rate (default: {d.learning_rate})")
    t.add_argument("--momentum", type=float, help=f"for --optimizer momentum (default: {d.momentum})")
    t.add_argument("--l2", type=float, help=f"L2 weight decay (default: {d.l2})")
    t.add_argument("--batch-size", type=int, help=f"(default: {d.batch_size})")
    t.add_argument("--epochs", type=int, help=f"(default: {d.epochs})")
    t.add_argument("--lr-decay", type=float, help=f"learning-rate factor per epoch (default: {d.lr_decay})")
    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts, rotations, scaling and stroke width (default: off)",
    )
    t.add_argument("--max-shift", type=float, help=f"augmentation: pixels (default: {d.max_shift})")
    t.add_argument("--max-rotation", type=float, help=f"augmentation: degrees (default: {d.max_rotation})")
    t.add_argument(
        "--scale-range", type=_float_pair, help=f"augmentation: LO,HI (default: {','.join(map(str, d.scale_range))})"
    )
    t.add_argument(
        "--stroke-change-prob",
        type=float,
        help=f"augmentation: chance to thicken/thin a stroke (default: {d.stroke_change_prob})",
    )
    t.add_argument(
        "--max-thicken",
        type=int,
        help=f"augmentation: thickened strokes grow by 1..N pixels (default: {d.max_thicken})",
    )
    t.add_argument("--max-slant", type=float, help=f"augmentation: degrees of lean either way (default: {d.max_slant})")
    t.add_argument(
        "--elastic-prob",
        type=float,
        help=f"augmentation: chance of an elastic distortion (Simard 2003) (default: {d.elastic_prob})",
    )
    t.add_argument("--elastic-alpha", type=float, help=f"augmentation: its strength (default: {d.elastic_alpha})")
    t.add_argument(
        "--elastic-sigma", type=float, help=f"augmentation: its smoothness, pixels (default: {d.elastic_sigma})"
    )
    t.add_argument(
        "--style-prob",
        type=float,
        help="augmentation: chance of each handwriting style MNIST lacks (flag and foot on 1, crossbar on 7, "
        f"slash through 0, curled 9, open 4) (default: {d.style_prob})",
    )
    t.add_argument("--n-train", type=int, help="use only this many training images (default: all)")
    t.add_argument("--val-fraction", type=float, help=f"held out for validation (default: {d.val_fraction:.4f})")
    t.add_argument("--seed", type=int, help=f"the only source of randomness (default: {d.seed})")
    t.add_argument(
        "--threads", type=int, help=f"BLAS threads while training (default: {d.threads}, fastest on 2 shared cores)"
    )
    t.add_argument("--log-every", type=int, help=f"progress every N batches (default: {d.log_every})")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate",
        parents=[data_opts],
        help="test accuracy, per-class accuracy, confusion matrix",
        description="Evaluate a model file on the official MNIST test set.",
    )
    e.add_argument("model", help="model file (.pkl); 'default' for the shipped model")
    e.add_argument(
        "--digits", metavar="DIGITS.npz", help="score on this personal digit set instead of MNIST test (per class)"
    )
    e.set_defaults(func=cmd_evaluate)

    o = FineTuneOptions()
    f = sub.add_parser(
        "finetune",
        parents=[data_opts],
        help="teach a model a person's digits (a digit set file) and save the tuned copy",
        description="Fine-tune a model on a personal digit set (.npz, as the app downloads it), mixing in "
        "MNIST training images so it does not forget them; prints accuracy before and after.",
    )
    f.add_argument("model", help="model file (.pkl); 'default' for the shipped model")
    f.add_argument("digits", metavar="DIGITS.npz", help="personal digit set file")
    f.add_argument("--out", "-o", required=True, help="where to save the tuned model")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    f.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    f.add_argument(
        "--held-out",
        type=float,
        default=0.0,
        help="fraction of each digit's examples kept out of tuning to score before/after (default: 0, use all)",
    )
    f.add_argument("--steps", type=int, help=f"optimiser steps (default: {o.steps})")
    f.add_argument("--lr", dest="learning_rate", type=float, help=f"learning rate (default: {o.learning_rate})")
    f.add_argument("--anchor", type=float, help=f"pull towards the original weights (default: {o.anchor})")
    f.add_argument(
        "--personal-fraction",
        type=float,
        help=f"share of each batch that is personal digits, the rest MNIST (default: {o.personal_fraction})",
    )
    f.add_argument("--batch-size", type=int, help=f"(default: {o.batch_size})")
    f.add_argument("--seed", type=int, help=f"(default: {o.seed})")
    f.add_argument("--threads", type=int, help=f"BLAS threads (default: {o.threads})")
    f.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "predict",
        help="predict the digit in image files",
        description="Predict the digit in each image file (PNG, JPEG, ...), any size or colours.",
    )
    p.add_argument("model", help="model file (.pkl); 'default' for the shipped model")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None, prog: str = "mnist-net") -> int:
    """Run the command line; ``prog`` is how the user called it (for help and the recorded command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    args.prog = prog
    args.argv = argv
    if getattr(args, "model", None) == "default":
        args.model = None
    try:
        return args.func(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
