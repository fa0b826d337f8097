"""MINE: the patch-based scale-content similarity mining operator of BiSCSM (docs/method.md#biscsm).

Given a query map q and another-scale map o (same channels, any sizes), every 3x3
patch of the query embedding theta(q) is compared with the L2-normalised 3x3 patches of
the key embedding g(.) of BOTH q and o ("self" plus "cross-scale" keys, jointly
softmax-ed with scale 10). The matching 3x3 patches of the value embedding f(.) are
pasted back at the query position (fold), the sum is divided by 4 (the authors'
constant, not 9) and q is added as a residual.

The score matrix is (h*w) x (|q| + |o|), quadratic in pixel count, so it is computed in
chunks of queries: memory stays bounded and, on CPU, a chunk that fits in cache is also
the fastest choice (about 2x faster than torch's scaled_dot_product_attention here).
On CUDA the product goes to torch's scaled_dot_product_attention instead (fused kernels
that never hold the score matrix either, forward and backward); `attention_backend`
decides, and `chunked_attention(..., backend=...)` runs either path on any device.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_KSIZE = 3
_KEY_EPS = 1e-4  # keys are divided by max(norm, 1e-4), as in the authors' code
_PASTE_DIVISOR = 4.0  # the authors' patch-paste normalisation (inherited from PANet)
_MAX_BLOCK = 1 << 22  # score elements per sample and chunk (16 MiB in float32)
# SDPA calls per query block of at most this many scores per sample: a fused kernel never
# stores them, but a fallback to the math kernel would (256 MiB in float32).
_SDPA_MAX_BLOCK = 1 << 26
_SDPA_ALIGN = 8  # head dims padded to a multiple of this, as the fused kernels require
BACKENDS = ("chunked", "sdpa")


def _patches(x: torch.Tensor) -> torch.Tensor:
    """All 3x3 patches (zero 'same' padding): [B, C, h, w] -> [B, C*9, h*w]."""
    return F.unfold(x, kernel_size=_KSIZE, padding=_KSIZE // 2)


def attention_backend(device_type: str, has_sdpa: bool | None = None) -> str:
    """'sdpa' (torch's scaled_dot_product_attention) on CUDA, 'chunked' elsewhere.

    On CUDA the fused kernels beat a Python loop of matrix products, and their backward keeps
    memory linear like the chunked one. On CPU the chunked loop is the faster of the two
    (module docstring). `has_sdpa`: whether this torch has it (None: look)."""
    if has_sdpa is None:
        has_sdpa = hasattr(F, "scaled_dot_product_attention")
    return "sdpa" if device_type == "cuda" and has_sdpa else "chunked"


def chunked_attention(queries: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor,
                      scale: float, chunk: int, backend: str | None = None) -> torch.Tensor:
    """softmax(scale * Q K) V, computed `chunk` queries at a time (fewer for huge key sets).

    queries [B, Lq, d], keys_t [B, d, L], values [B, L, dv] -> [B, Lq, dv].
    Only a [B, chunk, L] score block is alive at once (two of them during softmax). Under
    autograd the attention weights are not stored but recomputed chunk by chunk in
    backward (as flash attention does), so training memory stays O(Lq + L) too.
    `backend`: "chunked" (this loop), "sdpa" (torch's fused attention, `_sdpa_attention`) or
    None, `attention_backend`'s choice for the inputs' device.
    """
    backend = backend or attention_backend(queries.device.type)
    if backend == "sdpa":
        return _sdpa_attention(queries, keys_t, values, scale)
    if backend != "chunked":
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys_t, values)):
        return _ChunkedAttention.apply(queries, keys_t, values, scale, chunk)
    return _attend(queries * scale, keys_t, values, chunk)


def _sdpa_attention(queries: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """The same product through F.scaled_dot_product_attention (autograd as torch defines it).

    Inputs become [B, 1, L, D] (the fused kernels want 4-d tensors with contiguous rows) of
    one dtype: the autocast dtype inside autocast, else the widest. The head dims are padded
    with zeros to a multiple of 8 (the fused kernels' alignment; d = 9 x embedding width is
    rarely one): zero query/key columns add nothing to a score, zero value columns are cut
    from the result. Queries go in blocks so that a fallback to the unfused math kernel,
    which stores the scores, stays bounded too."""
    device_type = queries.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(torch.promote_types(queries.dtype, keys_t.dtype), values.dtype)
    pad_d, pad_v = -queries.shape[2] % _SDPA_ALIGN, -values.shape[2] % _SDPA_ALIGN
    q = F.pad(queries.to(dtype), (0, pad_d)).unsqueeze(1)
    k = F.pad(keys_t.to(dtype).transpose(1, 2), (0, pad_d)).contiguous().unsqueeze(1)
    v = F.pad(values.to(dtype), (0, pad_v)).contiguous().unsqueeze(1)
    rows = max(1, _SDPA_MAX_BLOCK // k.shape[2])
    blocks = [F.scaled_dot_product_attention(q[:, :, start:start + rows], k, v, scale=scale)
              for start in range(0, q.shape[2], rows)]
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=2)
    return out.squeeze(1)[..., :values.shape[2]]


def _chunk_rows(chunk: int, n_queries: int, n_keys: int) -> int:
    # Cap the score block at _MAX_BLOCK elements per sample: larger blocks only add memory,
    # fall out of cache and, past the allocator's mmap threshold, page-fault on every chunk.
    return max(1, min(chunk, n_queries, _MAX_BLOCK // n_keys))


def _attend(queries: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor,
            chunk: int) -> torch.Tensor:
    batch, n_queries, _ = queries.shape
    n_keys = keys_t.shape[2]
    rows = _chunk_rows(chunk, n_queries, n_keys)
    out = queries.new_empty(batch, n_queries, values.shape[2])
    if torch.is_grad_enabled():
        scores_buf = probs_buf = None
    else:  # two score blocks allocated once per call and reused by every chunk
        scores_buf = queries.new_empty(batch, rows, n_keys)
        probs_buf = queries.new_empty(batch, rows, n_keys)
    for start in range(0, n_queries, rows):
        q = queries[:, start:start + rows]
        if scores_buf is None:
            probs = torch.softmax(torch.bmm(q, keys_t), dim=-1)
        else:
            scores = torch.bmm(q, keys_t, out=scores_buf[:, :q.shape[1]])
            probs = torch.softmax(scores, dim=-1, out=probs_buf[:, :q.shape[1]])
        out[:, start:start + rows] = torch.bmm(probs, values)
    return out


class _ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, keys_t, values, scale, chunk):
        ctx.save_for_backward(queries, keys_t, values)
        ctx.scale, ctx.chunk = scale, chunk
        return _attend(queries * scale, keys_t, values, chunk)

    @staticmethod
    def backward(ctx, grad_out):
        queries, keys_t, values = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        dtype = torch.promote_types(queries.dtype, values.dtype)  # mixed under autocast
        queries, keys_t, values = queries.to(dtype), keys_t.to(dtype), values.to(dtype)
        grad_out = grad_out.to(dtype)
        grad_q = torch.empty_like(queries)
        grad_k = torch.zeros_like(keys_t)
        grad_v = torch.zeros_like(values)
        chunk = _chunk_rows(chunk, queries.shape[1], keys_t.shape[2])
        for start in range(0, queries.shape[1], chunk):
            q = queries[:, start:start + chunk]
            g = grad_out[:, start:start + chunk]
            attn = torch.softmax(torch.bmm(q * scale, keys_t), dim=-1)  # recomputed
            grad_v.baddbmm_(attn.transpose(1, 2), g)
            grad_attn = torch.bmm(g, values.transpose(1, 2))
            # softmax backward: dS = A * (dA - sum(dA * A)); then the scale of the scores
            grad_s = attn.mul_(grad_attn - (grad_attn * attn).sum(-1, keepdim=True)).mul_(scale)
            del grad_attn
            grad_q[:, start:start + chunk] = torch.bmm(grad_s, keys_t.transpose(1, 2))
            grad_k.baddbmm_(q.transpose(1, 2), grad_s)
        saved = ctx.saved_tensors
        return (grad_q.to(saved[0].dtype), grad_k.to(saved[1].dtype), grad_v.to(saved[2].dtype),
                None, None)


def _embedding(in_channels: int, out_channels: int) -> nn.Sequential:
    # 1x1 conv followed by PReLU with one shared slope (init 0.25), as in the authors' code.
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.PReLU())


class MINE(nn.Module):
    """MINE(q, o) -> a map of q's shape. Parameters: theta and g (1x1, C -> C//r) and f
    (1x1, C -> C), each with a PReLU: 633 for C = 20, r = 4."""

    def __init__(self, channels: int, reduction: int = 4, softmax_scale: float = 10.0,
                 chunk: int = 256):
        super().__init__()
        if channels < 1 or reduction < 1 or chunk < 1:
            raise ValueError(f"MINE needs channels, reduction, chunk >= 1, got "
                             f"{channels}, {reduction}, {chunk}")
        inner = max(1, channels // reduction)
        self.theta = _embedding(channels, inner)  # query embedding (authors: conv_match_L_base)
        self.g = _embedding(channels, inner)  # key embedding (conv_match)
        self.f = _embedding(channels, channels)  # value embedding (conv_assembly)
        self.softmax_scale = float(softmax_scale)
        self.chunk = int(chunk)

    def forward(self, q: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        height, width = q.shape[-2:]
        queries = _patches(self.theta(q)).transpose(1, 2)  # [B, Lq, 9r]
        keys = torch.cat([_patches(self.g(q)), _patches(self.g(o))], dim=2)  # [B, 9r, L]
        keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(_KEY_EPS)
        values = torch.cat([_patches(self.f(q)), _patches(self.f(o))], dim=2)
        values = values.transpose(1, 2).contiguous()  # [B, L, 9C]
        pasted = chunked_attention(queries, keys, values, self.softmax_scale, self.chunk)
        out = F.fold(pasted.transpose(1, 2), (height, width), kernel_size=_KSIZE,
                     padding=_KSIZE // 2)
        # fold returns NCHW; keep the network's channels-last layout for the next convs.
        return (out / _PASTE_DIVISOR + q).contiguous(memory_format=torch.channels_last)
