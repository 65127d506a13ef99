"""Weight-only int8 (per output channel) and int4 (group-wise, two per byte) storage, so quantized
memory is measured rather than assumed.

Storage matches ``g4sim.analytic.quant`` exactly: int8 = 1 byte per weight + one fp32 scale per
output row; int4-gN = half a byte per weight + an fp16 scale and an fp16 zero per group of N along
the input dimension.  Quantized: attention and MLP projections and the routed experts; kept in the
model dtype: embeddings, PLE table and projections, norms, router (as the analytic formats say).
Weights are dequantized on the fly, one matrix (or one expert) at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from g4sim.model.model import Attention, Experts, MLP


def _quantize_int8(w: torch.Tensor) -> dict[str, torch.Tensor]:
    scale = w.float().abs().amax(dim=-1).clamp(min=1e-8) / 127.0
    q = torch.round(w.float() / scale[..., None]).clamp(-127, 127).to(torch.int8)
    return {"qweight": q, "scale": scale}


def _dequantize_int8(b: dict[str, torch.Tensor], dtype) -> torch.Tensor:
    return (b["qweight"].float() * b["scale"][..., None]).to(dtype)


def _quantize_int4(w: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    *lead, cols = w.shape
    groups = -(-cols // group)
    padded = F.pad(w.float(), (0, groups * group - cols)).reshape(*lead, groups, group)
    lo, hi = padded.amin(-1), padded.amax(-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8)
    q = torch.round((padded - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    q = q.reshape(*lead, groups * group)[..., :cols]
    packed = q[..., 0::2] | (q[..., 1::2] << 4)
    return {"qweight": packed, "scale": scale.half(), "zero": lo.half()}


def _dequantize_int4(b: dict[str, torch.Tensor], dtype, cols: int, group: int) -> torch.Tensor:
    packed = b["qweight"]
    q = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(*packed.shape[:-1], -1)
    groups = b["scale"].shape[-1]
    q = F.pad(q.float(), (0, groups * group - cols)).reshape(*packed.shape[:-1], groups, group)
    w = q * b["scale"].float()[..., None] + b["zero"].float()[..., None]
    return w.reshape(*packed.shape[:-1], groups * group)[..., :cols].to(dtype)


class QuantTensor(nn.Module):
    """A weight stored quantized (buffers), dequantized on demand; leading dims index experts."""

    def __init__(self, w: torch.Tensor, fmt: str):
        super().__init__()
        self.fmt, self.cols, self.dtype = fmt, w.shape[-1], w.dtype
        self.group = int(fmt.split("-g")[1]) if fmt.startswith("int4") else 0
        parts = _quantize_int8(w) if fmt == "int8" else _quantize_int4(w, self.group)
        for name, t in parts.items():
            self.register_buffer(name, t)

    def _parts(self, index=None) -> dict[str, torch.Tensor]:
        names = ("qweight", "scale") + (("zero",) if self.group else ())
        return {n: (getattr(self, n) if index is None else getattr(self, n)[index]) for n in names}

    def weight(self, index=None) -> torch.Tensor:
        parts = self._parts(index)
        if self.fmt == "int8":
            return _dequantize_int8(parts, self.dtype)
        return _dequantize_int4(parts, self.dtype, self.cols, self.group)


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, fmt: str):
        super().__init__()
        self.weight_q = QuantTensor(linear.weight.data, fmt)
        self.bias = linear.bias

    def forward(self, x):
        return F.linear(x, self.weight_q.weight(), self.bias)


class QuantExperts(Experts):
    """Expert banks stored quantized; Experts.forward dequantizes only the experts a batch routes to."""

    def __init__(self, experts: Experts, fmt: str):
        nn.Module.__init__(self)
        self.num_experts = experts.num_experts
        self.gate_up_q = QuantTensor(experts.gate_up_proj.data, fmt)
        self.down_q = QuantTensor(experts.down_proj.data, fmt)

    def expert_weights(self, e: int):
        return self.gate_up_q.weight(e), self.down_q.weight(e)


QUANT_FORMATS = ("int8", "int4-g128")


@torch.no_grad()
def quantize_weights(model: nn.Module, fmt: str) -> nn.Module:
    """Replace the attention / MLP linears and expert banks of ``model`` in place."""
    if fmt != "int8" and not (fmt.startswith("int4-g") and fmt[6:].isdigit()):
        raise ValueError(f"weight format {fmt!r}; valid: int8, int4-gN (e.g. int4-g128)")
    for module in list(model.modules()):
        if isinstance(module, (Attention, MLP)):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, name, QuantLinear(child, fmt))
        for name, child in list(module.named_children()):
            if type(child) is Experts:
                setattr(module, name, QuantExperts(child, fmt))
    return model
