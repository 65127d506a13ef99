"""Weight-only int8 (per output channel) and int4 (group-wise, two per byte) storage, so quantized
memory is measured rather than assumed.

Storage matches what the "g4sim" engine prices (``g4sim.analytic.quant`` plus the engine's tied head,
``G4simEngine.head_quant``) exactly: int8 = 1 byte per weight + one fp32 scale per output row; int4-gN =
half a byte per weight + a 16-bit scale and a 16-bit zero per group of N along the input dimension (a
partial last group costs a whole group).  Quantized: attention and MLP projections and the routed
experts; kept in the model dtype: PLE table and projections, norms, router.  The tied embedding, which is
also the LM head (read whole at every decode step: at reduced depth it was half a bf16 step), is stored
int8 per row in both formats (``QuantEmbedding``): as gpt-fast quantizes its output Linear, and as
llama.cpp's 4-bit mixes keep the tied output tensor at 6-8 bits.  A lookup dequantizes only its rows.

On the CPU the matrix products run on torch's packed weight-only kernels, never on a dequantized copy:

* int8: ``aten._weight_int8pack_mm(x, int8 [N, K], scales [N])`` (scales cast per call to x's dtype,
  N elements; K must be a multiple of 16);
* int4-gN: ``aten._weight_int4pack_mm_for_cpu(x_bf16, packed, N, scales_and_zeros)`` on weights packed
  by ``aten._convert_weight_to_int4pack_for_cpu`` (uint8 [N, K/2]; the kernel's own blocked layout) with
  bf16 ``scales_and_zeros`` [K/N, rows, 2] (w = (q - 8) * scale + zero).  The kernel takes group sizes
  32/64/128/256 and needs K a multiple of the group, so a row whose last group is partial (Gemma 4's
  704- and 2112-wide inputs under g128) is stored as two packed parts, the whole groups and the tail as
  one group of its own width (64 there): two kernel calls summed, and exactly the analytic bytes.

These kernels are for few rows (decode): they dequantize inside the kernel per block of 4 rows, so
with many rows (prefill) they are slower than a bf16 GEMM.  A matmul with more than ``PREFILL_ROWS``
rows (16 for int8, 1024 for int4) therefore dequantizes the one matrix (or expert) into a bf16 temporary and runs a GEMM: int8 as
``(x @ q.T) * scale`` (a bf16 copy of q: 2 B per element), int4 by unpacking the kernel's own packed
layout (found at first use by packing a probe; checked against the kernel in the tests) in fp32 (codes,
an fp32 copy and the bf16 result: ~7-9 B per element of one matrix at once).

Elsewhere (CUDA, or shapes the kernels do not take: int8 with K % 16, int4 with rows % 16 or a tail
that is not 32/64/128) the weight is stored plainly and dequantized on the fly, one matrix (or one
expert) at a time, as before (int8 with many rows also takes the ``(x @ q.T) * scale`` path there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from g4sim.model.model import Attention, Experts, MLP

_INT4_GROUPS = (32, 64, 128, 256)  # group sizes _weight_int4pack_mm_for_cpu takes


def _has_op(name: str) -> bool:
    return hasattr(torch.ops.aten, name)


def _quantize_int8(w: torch.Tensor) -> dict[str, torch.Tensor]:
    scale = w.float().abs().amax(dim=-1).clamp(min=1e-8) / 127.0
    q = torch.round(w.float() / scale[..., None]).clamp(-127, 127).to(torch.int8)
    return {"qweight": q, "scale": scale}


def _dequantize_int8(b: dict[str, torch.Tensor], dtype) -> torch.Tensor:
    return (b["qweight"].float() * b["scale"][..., None]).to(dtype)


def _int4_codes(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit codes: w ~ q * scale + lo, q in 0..15.  Returns (q uint8 [*, K], scale, lo [*, groups])."""
    *lead, cols = w.shape
    groups = -(-cols // group)
    padded = F.pad(w.float(), (0, groups * group - cols)).reshape(*lead, groups, group)
    lo, hi = padded.amin(-1), padded.amax(-1)
    scale = ((hi - lo) / 15.0).clamp(min=1e-8)
    q = torch.round((padded - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8)
    return q.reshape(*lead, groups * group)[..., :cols], scale, lo


def _quantize_int4(w: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    q, scale, lo = _int4_codes(w, group)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)
    return {"qweight": packed, "scale": scale.half(), "zero": lo.half()}


def _dequantize_int4(b: dict[str, torch.Tensor], dtype, cols: int, group: int) -> torch.Tensor:
    packed = b["qweight"]
    q = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(*packed.shape[:-1], -1)
    groups = b["scale"].shape[-1]
    q = F.pad(q.float(), (0, groups * group - cols)).reshape(*packed.shape[:-1], groups, group)
    w = q * b["scale"].float()[..., None] + b["zero"].float()[..., None]
    return w.reshape(*packed.shape[:-1], groups * group)[..., :cols].to(dtype)


def _int4_parts(rows: int, cols: int, group: int) -> list[tuple[int, int, int]] | None:
    """(begin, end, group) column ranges the CPU int4 kernel can take for a [rows, cols] weight, or None."""
    if rows % 16 or group not in _INT4_GROUPS:
        return None
    whole, tail = cols // group * group, cols % group
    if tail and tail not in _INT4_GROUPS:
        return None
    parts = [(0, whole, group)] if whole else []
    return parts + ([(whole, cols, tail)] if tail else [])


def _pack_int4(w: torch.Tensor, begin: int, end: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns begin:end of w [*, N, K] -> (packed uint8 [*, N, (end-begin)/2], bf16 scales_and_zeros [*, groups, N, 2])."""
    q, scale, lo = _int4_codes(w[..., begin:end], group)
    *lead, rows, cols = q.shape
    flat = q.reshape(-1, rows, cols).to(torch.int32)
    packed = torch.stack([torch.ops.aten._convert_weight_to_int4pack_for_cpu(m.contiguous(), 1) for m in flat])
    zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
    sz = torch.stack([scale, zero], dim=-1).transpose(-2, -3)  # [*, N, groups, 2] -> [*, groups, N, 2]
    return packed.reshape(*lead, *packed.shape[1:]), sz.to(torch.bfloat16).contiguous()


def _each(fn, w: torch.Tensor, *args) -> dict[str, torch.Tensor]:
    """fn over a [N, K] weight, or over each expert of an [E, N, K] bank (bounds the fp32 temporaries)."""
    if w.ndim == 2:
        return fn(w, *args)
    parts = [fn(m, *args) for m in w]
    return {name: torch.stack([p[name] for p in parts]) for name in parts[0]}


def _pack_int4_2d(w: torch.Tensor, begin: int, end: int, group: int) -> dict[str, torch.Tensor]:
    packed, sz = _pack_int4(w, begin, end, group)
    return {"packed": packed, "sz": sz}


# Matmuls with more rows than this dequantize the weight (one matrix / expert) and run a bf16 GEMM.  Measured
# on a 2-thread AVX-512 CPU (no AVX512-BF16): int8's kernel loses to (x @ q.T) * s beyond ~16-32 rows; int4's
# Python-side unpacking costs ~3 ns per element, so its kernel wins up to ~512 rows (MoE prefill: ~32 per expert).
PREFILL_ROWS = {"int8": 16, "int4": 1024}


def _unpack_blocks(packed: torch.Tensor, rows: int, block: int, split: bool) -> torch.Tensor:
    """Codes [rows, K] from a [rows, K/2] packed weight, given the CPU kernel's layout (block rows, and whether a
    full block's low / high nibbles hold its first / second half of rows, or neighbouring rows)."""
    half_k = packed.shape[-1]
    flat, k = packed.reshape(-1), 2 * half_k
    full = rows // block
    out = []
    if full:
        b = flat[:full * block * half_k].reshape(full, k, block // 2)
        lo, hi = b & 0xF, b >> 4
        codes = torch.cat([lo, hi], -1) if split else torch.stack([lo, hi], -1).reshape(full, k, block)
        out.append(codes.transpose(1, 2).reshape(full * block, k))
    if rows % block:
        b = flat[full * block * half_k:].reshape(k, (rows % block) // 2)
        out.append(torch.stack([b & 0xF, b >> 4], -1).reshape(k, rows % block).t())
    return torch.cat(out) if len(out) > 1 else out[0]


_LAYOUT: list = []


def _int4_layout() -> tuple[int, bool] | None:
    """The packed layout this CPU's kernel uses (it depends on the vector ISA), found by packing a probe."""
    if not _LAYOUT:
        codes = torch.randint(0, 16, (80, 64), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
        found = [c for c in ((64, True), (32, True), (32, False))
                 if torch.equal(_unpack_blocks(packed, 80, *c).to(torch.int32), codes)]
        _LAYOUT.append(found[0] if found else None)
    return _LAYOUT[0]


class QuantTensor(nn.Module):
    """A weight [*, N, K] stored quantized (buffers); leading dims index experts.

    ``matmul(x, index)`` = x @ W[index].T (x: [M, K]) on the packed kernels where they apply;
    ``weight(index)`` dequantizes (reference / fallback)."""

    def __init__(self, w: torch.Tensor, fmt: str):
        super().__init__()
        self.fmt, self.rows, self.cols, self.dtype = fmt, w.shape[-2], w.shape[-1], w.dtype
        self.group = int(fmt.split("-g")[1]) if fmt.startswith("int4") else 0
        cpu = w.device.type == "cpu"
        self.parts: list[tuple[int, int, int]] | None = None
        if self.group:
            if cpu and _has_op("_weight_int4pack_mm_for_cpu") and _has_op("_convert_weight_to_int4pack_for_cpu"):
                self.parts = _int4_parts(self.rows, self.cols, self.group)
            if self.parts is not None:
                for i, (begin, end, group) in enumerate(self.parts):
                    b = _each(_pack_int4_2d, w, begin, end, group)
                    self.register_buffer(f"qweight{i}", b["packed"])
                    self.register_buffer(f"scales_and_zeros{i}", b["sz"])
            else:
                for name, t in _each(_quantize_int4, w, self.group).items():
                    self.register_buffer(name, t)
        else:
            for name, t in _each(_quantize_int8, w).items():
                self.register_buffer(name, t)
            self.int8_kernel = cpu and self.cols % 16 == 0 and _has_op("_weight_int8pack_mm")

    @property
    def packed(self) -> bool:
        """Whether ``matmul`` runs on a packed kernel (no dequantized copy)."""
        return self.parts is not None if self.group else self.int8_kernel

    def _parts(self, index=None) -> dict[str, torch.Tensor]:
        names = ("qweight", "scale") + (("zero",) if self.group else ())
        return {n: (getattr(self, n) if index is None else getattr(self, n)[index]) for n in names}

    def matmul(self, x: torch.Tensor, index: int | None = None) -> torch.Tensor:
        """x [M, K] @ W[index].T -> [M, N] in x's dtype."""
        if x.shape[0] > PREFILL_ROWS["int4" if self.group else "int8"]:  # prefill: a dequantized copy, a GEMM
            if not self.group:  # x @ (q * s).T = (x @ q.T) * s
                p = self._parts(index)
                return F.linear(x, p["qweight"].to(x.dtype)) * p["scale"].to(x.dtype)
            if self.parts is not None:
                return F.linear(x, self._dequantize_packed(index).to(x.dtype))
        if self.group and self.parts is not None:
            xb = x.to(torch.bfloat16)
            out = None
            for i, (begin, end, group) in enumerate(self.parts):
                packed, sz = getattr(self, f"qweight{i}"), getattr(self, f"scales_and_zeros{i}")
                if index is not None:
                    packed, sz = packed[index], sz[index]
                part = xb if (begin, end) == (0, self.cols) else xb[:, begin:end]
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(part.contiguous(), packed, group, sz)
                out = y if out is None else out.add_(y)
            return out.to(x.dtype)
        if not self.group and self.int8_kernel and x.device.type == "cpu":
            p = self._parts(index)
            return torch.ops.aten._weight_int8pack_mm(x.contiguous(), p["qweight"], p["scale"].to(x.dtype))
        return F.linear(x, self.weight(index).to(x.dtype))

    def weight(self, index=None) -> torch.Tensor:
        if self.group and self.parts is not None:
            return self._unpack_int4(index)
        parts = self._parts(index)
        if self.fmt == "int8":
            return _dequantize_int8(parts, self.dtype)
        return _dequantize_int4(parts, self.dtype, self.cols, self.group)

    def _dequantize_packed(self, index) -> torch.Tensor:
        """bf16 [N, K] from the packed int4 parts, with the kernel's arithmetic ((q - 8) * scale + zero, fp32)."""
        layout = _int4_layout()
        if layout is None:
            return self._unpack_int4(index).to(torch.bfloat16)
        pieces = []
        for i, (begin, end, group) in enumerate(self.parts):
            packed, sz = getattr(self, f"qweight{i}"), getattr(self, f"scales_and_zeros{i}")
            if index is not None:
                packed, sz = packed[index], sz[index]
            codes = _unpack_blocks(packed, self.rows, *layout).reshape(self.rows, -1, group)
            sz = sz.float().transpose(0, 1)  # [N, groups, 2]
            w = (codes.float() - 8).mul_(sz[..., :1]).add_(sz[..., 1:])
            pieces.append(w.reshape(self.rows, end - begin).to(torch.bfloat16))
        return torch.cat(pieces, -1) if len(pieces) > 1 else pieces[0]

    def _unpack_int4(self, index) -> torch.Tensor:
        """Dequantize the packed layout by running the kernel on an identity (exact: one term per output)."""
        lead = self.qweight0.shape[:-2]
        if index is None and len(lead):
            return torch.stack([self._unpack_int4(e) for e in range(lead[0])])
        eye = torch.eye(self.cols, dtype=torch.bfloat16)
        return self.matmul(eye, index).t().to(self.dtype)


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, fmt: str):
        super().__init__()
        self.weight_q = QuantTensor(linear.weight.data, fmt)
        self.bias = linear.bias

    def forward(self, x):
        y = self.weight_q.matmul(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


class QuantExperts(Experts):
    """Expert banks stored quantized; ``Experts.forward`` runs only the experts a batch routes to."""

    def __init__(self, experts: Experts, fmt: str):
        nn.Module.__init__(self)
        self.num_experts = experts.num_experts
        self.gate_up_q = QuantTensor(experts.gate_up_proj.data, fmt)
        self.down_q = QuantTensor(experts.down_proj.data, fmt)

    def gate_up(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return self.gate_up_q.matmul(x, e)

    def down(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return self.down_q.matmul(x, e)


# Off the CPU kernel, the int8 head converts this many table elements to 16-bit at a time (8 MiB): a bound far
# below the one quantized matrix the GPU rule dequantizes at once (``DEQUANT_BYTES_PER_ELEMENT``), so unpriced.
HEAD_BLOCK_ELEMENTS = 2**22


class QuantEmbedding(nn.Module):
    """A tied embedding stored int8 per row (one fp32 scale per token): looked up row by row, and used whole as
    the LM head through the packed int8 kernel (``QuantTensor`` int8: whatever the rows, never a dequantized copy
    of the table)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.table = QuantTensor(embedding.weight.data, "int8")
        self.dtype = embedding.weight.dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.table.qweight[ids] * self.table.scale[ids, None]  # int8 x fp32 -> fp32, the lookup's rows only
        return rows.to(self.dtype)

    def as_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., H] @ table.T -> [..., V] in hidden's dtype."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        q, scale = self.table.qweight, self.table.scale
        if self.table.int8_kernel and flat.device.type == "cpu":
            out = torch.ops.aten._weight_int8pack_mm(flat.contiguous(), q, scale.to(flat.dtype))
        else:  # elsewhere: (x @ q.T) * scale over blocks of vocabulary rows, never a copy of the whole table
            out = torch.empty(flat.shape[0], q.shape[0], dtype=flat.dtype, device=flat.device)
            step = max(1, HEAD_BLOCK_ELEMENTS // q.shape[1])
            for begin in range(0, q.shape[0], step):
                block = slice(begin, begin + step)
                torch.mul(F.linear(flat, q[block].to(flat.dtype)), scale[block].to(flat.dtype), out=out[:, block])
        return out.reshape(*hidden.shape[:-1], -1)


QUANT_FORMATS = ("int8", "int4-g128")


@torch.no_grad()
def quantize_weights(model: nn.Module, fmt: str) -> nn.Module:
    """Replace the attention / MLP linears and expert banks of ``model`` in place, and its tied embedding (the LM
    head) by an int8 one."""
    if fmt != "int8" and not (fmt.startswith("int4-g") and fmt[6:].isdigit()):
        raise ValueError(f"weight format {fmt!r}; valid: int8, int4-gN (e.g. int4-g128)")
    text = getattr(model, "model", None)
    if getattr(model, "lm_head", 0) is None and isinstance(getattr(text, "embed_tokens", None), nn.Embedding):
        text.embed_tokens = QuantEmbedding(text.embed_tokens)
    for module in list(model.modules()):
        if isinstance(module, (Attention, MLP)):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, name, QuantLinear(child, fmt))
        for name, child in list(module.named_children()):
            if type(child) is Experts:
                setattr(module, name, QuantExperts(child, fmt))
    return model
