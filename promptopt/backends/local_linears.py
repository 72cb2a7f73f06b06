"""The local backend's fast linear layers: oneDNN pre-packed float32 weights and fbgemm
int8 x int8 matmuls with per-channel weight scales and per-token activation scales."""

from __future__ import annotations

import functools
import warnings
from typing import Any

from promptopt.backends.local_torch import _import_torch

# --------------------------------------------------------------------------- packed linear


@functools.lru_cache(maxsize=1)
def _make_packed_linear_class() -> Any:
    torch = _import_torch()

    class PackedLinear(torch.nn.Module):  # type: ignore[name-defined]
        """``nn.Linear`` on a oneDNN pre-packed float32 weight (inference only)."""

        def __init__(self, linear: Any, batch_hint: int) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().to(torch.float32).contiguous()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch_hint)
            self.bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).contiguous()

        def forward(self, x: Any) -> Any:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")

    return PackedLinear


def _pack_linears(model: Any, batch_hint: int) -> int:
    """Replace every ``nn.Linear`` with a packed one; returns how many (0 when unavailable)."""
    torch = _import_torch()
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return 0
    packed_cls = _make_packed_linear_class()
    # Check the kernel on a small matrix before trusting it with the model.
    probe = torch.nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    try:
        with torch.inference_mode():
            if not torch.allclose(packed_cls(probe, batch_hint)(x), probe(x), atol=1e-4, rtol=1e-4):
                return 0
    except RuntimeError:
        return 0
    return _replace_linears(model, lambda linear: packed_cls(linear, batch_hint))


def _replace_linears(model: Any, convert: Any) -> int:
    """Swap every plain ``nn.Linear`` in ``model`` for ``convert(linear)``; returns how many."""
    torch = _import_torch()
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, convert(child))
                replaced += 1
    return replaced


@functools.lru_cache(maxsize=1)
def _make_int8_linear_class() -> Any:
    torch = _import_torch()

    class RowwiseInt8Linear(torch.nn.Module):  # type: ignore[name-defined]
        """``nn.Linear`` as an int8 x int8 matmul (fbgemm), quantized row by row.

        Weights: symmetric int8, one scale per output channel. Activations: each row
        (token) is divided by its own max |x| before torch's dynamic quantization, and a
        constant anchor row holding +1 and -1 is appended, so the quantization range is
        always exactly [-1, 1]. Each token is therefore quantized the same way whatever else
        is in the batch, and int32 accumulation is exact, so a row's output does not depend
        on batch composition: batched greedy decoding equals one-by-one decoding and prefix
        reuse equals a full recompute, as in float32. torch's own ``quantize_dynamic``
        uses one range for the whole batch, which breaks both and lets one outlier token
        blur every other row.
        """

        def __init__(self, linear: Any) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().to(torch.float32)
            scale = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).to(torch.float64)
            zero = torch.zeros(weight.shape[0], dtype=torch.long)
            with warnings.catch_warnings():
                # quantized tensors are deprecated after torch 2.13 (pinned here); the
                # fbgemm kernels they feed are the fastest matmul this CPU has
                warnings.simplefilter("ignore", UserWarning)
                qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)
            self.bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).contiguous()
            anchor = torch.zeros(1, self.in_features)
            anchor[0, 0], anchor[0, -1] = 1.0, -1.0
            self.anchor = anchor

        def forward(self, x: Any) -> Any:
            rows = x.reshape(-1, self.in_features).to(torch.float32)
            norm = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
            scaled = torch.cat([rows / norm, self.anchor], dim=0)
            # reduce_range: 7-bit activations, which fbgemm's AVX2 kernel needs to avoid
            # saturating its 16-bit intermediate sums
            out = torch.ops.quantized.linear_dynamic(scaled, self.packed, True)[:-1] * norm
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*x.shape[:-1], self.out_features)

    return RowwiseInt8Linear


def _int8_available() -> bool:
    torch = _import_torch()
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in (
        torch.backends.quantized.supported_engines
    )


def _quantize_linears(model: Any) -> int:
    """Replace every ``nn.Linear`` with a row-wise int8 one; returns how many."""
    return _replace_linears(model, _make_int8_linear_class())
