"""Convolution, max-pooling and dropout as pure batch-first functions, forward beside backward.

Images are NHWC: ``(batch, height, width, channels)``, float32. NHWC by measurement (README,
"CNN"): the GEMM of im2col columns ``(batch*h*w, kh*kw*c_in)`` with the filters
``(kh*kw*c_in, c_out)`` gives ``(batch*h*w, c_out)``, which *is* the NHWC output, so neither
direction needs a transpose; gathering the columns copies runs of ``c_in`` contiguous floats.
NCHW needs a transpose of every output and of every gradient (about 20% slower here at the
preset's shapes). Filters are ``(kh, kw, c_in, c_out)``; stride 1; "same" pads with zeros
(the extra row/column of an even kernel at the bottom/right, as PyTorch does).

Dense layers and activations are in ``functional``; the network over a list of layers too.
Non-goals: strides, dilation, groups, other poolings.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def same_padding(kernel: int) -> tuple[int, int]:
    """(before, after) zero padding that keeps the size for a stride-1 kernel."""
    return (kernel - 1) // 2, kernel // 2


def im2col(X: np.ndarray, kernel: tuple[int, int], padding: str) -> np.ndarray:
    """Patches of X: (n, h, w, c) -> columns (n, ho, wo, kh*kw*c), one row per output pixel.

    One copy of the (n, ho, wo, kh, kw, c) window view: no loop over pixels or images.
    """
    kh, kw = kernel
    if padding == "same":
        (t, bo), (le, r) = same_padding(kh), same_padding(kw)
        X = np.pad(X, ((0, 0), (t, bo), (le, r), (0, 0)))
    windows = sliding_window_view(X, (kh, kw), axis=(1, 2))  # (n, ho, wo, c, kh, kw), a view
    n, ho, wo, c = windows.shape[:4]
    cols = np.empty((n, ho, wo, kh, kw, c), X.dtype)
    np.copyto(cols, windows.transpose(0, 1, 2, 4, 5, 3))  # c innermost: contiguous runs
    return cols.reshape(n, ho, wo, kh * kw * c)


def conv2d_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray, padding: str = "same") -> tuple[np.ndarray, np.ndarray]:
    """2-D convolution (cross-correlation, as in every framework), stride 1.

    X: (n, h, w, c_in), W: (kh, kw, c_in, c_out), b: (c_out,) -> (Z: (n, ho, wo, c_out), cols),
    where ho, wo = h, w for "same" and h-kh+1, w-kw+1 for "valid"; ``cols`` (n*ho*wo,
    kh*kw*c_in) are the im2col columns, kept for the backward pass. One GEMM.
    """
    kh, kw, c_in, c_out = W.shape
    cols = im2col(X, (kh, kw), padding)
    n, ho, wo, k = cols.shape
    cols = cols.reshape(n * ho * wo, k)
    Z = cols @ W.reshape(k, c_out)
    Z += b
    return Z.reshape(n, ho, wo, c_out), cols


def conv2d_backward(
    dZ: np.ndarray, cols: np.ndarray, W: np.ndarray, input_shape: tuple[int, ...], padding: str, need_dX: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``conv2d_forward`` given dL/dZ: (n, ho, wo, c_out) and its ``cols``.

    Returns (dX: (n, h, w, c_in) or None, dW: (kh, kw, c_in, c_out), db: (c_out,)). dX adds each
    kernel offset's slice of the column gradient into place: kh*kw vectorised adds (col2im),
    no loop over pixels or images. ``need_dX=False`` skips it (the first layer: the image).
    """
    kh, kw, c_in, c_out = W.shape
    dZ2 = dZ.reshape(-1, c_out)
    dW = (cols.T @ dZ2).reshape(W.shape)
    db = dZ2.sum(axis=0)
    if not need_dX:
        return None, dW, db
    n, ho, wo, _ = dZ.shape
    dcols = (dZ2 @ W.reshape(-1, c_out).T).reshape(n, ho, wo, kh, kw, c_in)
    h, w = input_shape[1], input_shape[2]
    if padding == "same":
        (t, _), (le, _) = same_padding(kh), same_padding(kw)
    else:
        t = le = 0
    padded = np.zeros((n, ho + kh - 1, wo + kw - 1, c_in), dZ.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + ho, j : j + wo, :] += dcols[:, :, :, i, j, :]
    return padded[:, t : t + h, le : le + w, :], dW, db


def maxpool_forward(X: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over non-overlapping size x size windows (stride = size; a ragged edge is dropped).

    X: (n, h, w, c) -> (Y: (n, h//size, w//size, c), argmax: (n, ho, wo, c) uint8 index of the
    winner in its window, row-major). A tie goes to the first maximum, so exactly one input
    gets the gradient, as in PyTorch.
    """
    n, h, w, c = X.shape
    ho, wo = h // size, w // size
    blocks = X[:, : ho * size, : wo * size, :].reshape(n, ho, size, wo, size, c)
    windows = blocks.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, size * size)  # one copy
    argmax = windows.argmax(axis=-1).astype(np.uint8)
    Y = np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]
    return Y, argmax


def maxpool_backward(dY: np.ndarray, argmax: np.ndarray, input_shape: tuple[int, ...], size: int) -> np.ndarray:
    """dL/dX (n, h, w, c) of ``maxpool_forward``: each window's gradient goes to its winner."""
    n, h, w, c = input_shape
    ho, wo = dY.shape[1], dY.shape[2]
    windows = np.zeros((n, ho, wo, c, size * size), dY.dtype)
    np.put_along_axis(windows, argmax[..., None].astype(np.intp), dY[..., None], axis=-1)
    blocks = windows.reshape(n, ho, wo, c, size, size).transpose(0, 1, 4, 2, 5, 3)
    if ho * size == h and wo * size == w:
        return blocks.reshape(n, h, w, c)
    dX = np.zeros(input_shape, dY.dtype)
    dX[:, : ho * size, : wo * size, :] = blocks.reshape(n, ho * size, wo * size, c)
    return dX


def dropout_mask(shape: tuple[int, ...], rate: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Inverted-dropout scale: 0 with probability ``rate``, else 1 / (1 - rate), so the expected
    activation is unchanged and prediction needs no rescaling."""
    keep = rng.random(shape, dtype=np.float32) >= rate
    return keep.astype(dtype) * dtype(1 / (1 - rate))


def dropout_forward(A: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A * mask (mask from ``dropout_mask``); training only: prediction skips the layer."""
    return np.multiply(A, mask, out=out)


def dropout_backward(dY: np.ndarray, mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dA = dY * mask."""
    return np.multiply(dY, mask, out=out)
