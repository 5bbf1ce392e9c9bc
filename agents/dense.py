"""Dense-layer arithmetic for training passes written out by hand: forward, and the two backward products.

A trainer that skips autograd (SAC's update) spends nearly all its time in
``(batch x width) @ (width x width)`` products. On the CPUs measured here torch's
default float32 matmul (MKL) runs at half the speed of oneDNN's, which torch
exposes as ``torch.ops.mkldnn._linear_pointwise`` (full float32 precision; the
bias and the activation are fused into the same call). oneDNN's fixed cost per
call is higher, so small products keep using ``addmm``. Its weight operand must be
dense (contiguous, or the transpose of a contiguous tensor): a strided slice
sends it to a reference kernel a thousand times slower, so such a weight is copied.
"""

from __future__ import annotations

import torch

ACTIVATIONS = ("relu", "tanh")


def _find_onednn():
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


_ONEDNN = _find_onednn()
_ONEDNN_MIN_WORK = 1 << 19  # multiply-adds below which addmm's lower fixed cost wins (measured)
_ONEDNN_MIN_SIDE = 16


def _use_onednn(rows: int, out: int, inp: int) -> bool:
    return _ONEDNN is not None and min(rows, out) >= _ONEDNN_MIN_SIDE and rows * out * inp >= _ONEDNN_MIN_WORK


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, activation: str | None = None) -> torch.Tensor:
    """``activation(x @ w.T + b)`` for ``w`` laid out as in ``nn.Linear`` (``(out, in)``; any strides)."""
    out, inp = w.shape
    if _use_onednn(x.shape[0], out, inp):
        row_major, column_major = w.stride() == (inp, 1), w.stride() == (1, out)
        if not (row_major or column_major):
            w = w.contiguous()
        return _ONEDNN(x, w, b, activation or "none", [], "")
    y = x @ w.t() if b is None else torch.addmm(b, x, w.t())
    if activation == "relu":
        return y.relu_()
    return y.tanh_() if activation == "tanh" else y


def weight_grad(d_out: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """dL/dW = d_out.T @ inputs, shaped ``(out, in)`` like the weight."""
    (rows, out), inp = d_out.shape, inputs.shape[1]
    if _use_onednn(out, inp, rows):
        return linear(d_out.t(), inputs.t())
    if inp < out:  # MKL is several times faster at the transposed product for a narrow input (a first layer)
        return (inputs.t() @ d_out).t().contiguous()
    return d_out.t() @ inputs


def input_grad(d_out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """dL/dx = d_out @ W."""
    return linear(d_out, w.t())


def activation_grad(d_h: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """dL/dz from dL/dh where ``h = activation(z)``, computed from ``h`` alone (one fused kernel)."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(d_h, h, 0)
    return torch.ops.aten.tanh_backward(d_h, h)
