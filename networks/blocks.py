"""Residual block (RB) and dense residual group DRG(n) of the N_mn modules
(docs/method.md#architecture).

DRG(n): s_0 = x, L = [x]; for i = 1..n: r_i = RB_i(s_{i-1} + skip_i), L += [r_i],
s_i = LReLU(Conv1x1(concat(L))). Returns s_n and [r_1..r_n].

The dense concatenations dominate the released code's cost in memory and time
(docs/performance.md, "Why the two differ"). Two code paths
compute the same function:
* no autograd (inference): the 1x1 convs are never applied to a concatenation; each
  member's contribution to all later 1x1 convs is pushed into one accumulator by a
  single matrix product when the member is created (see `_forward_push`);
* autograd: each 1x1 conv (+ LeakyReLU) is a custom autograd function computed as a
  sum of per-member matrix products; it saves only the members (which are kept anyway)
  and its output, so memory grows with n instead of n^2 and nothing is concatenated.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

SLOPE = 0.2  # LeakyReLU slope used everywhere (docs/method.md#architecture)


class ResidualBlock(nn.Module):
    """x -> x + Conv3x3(LReLU(Conv3x3(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place on fresh conv outputs (allowed under autograd: conv backward does not
        # need its output): fewer large allocations, which cost page faults on CPU.
        return self.conv2(F.leaky_relu(self.conv1(x), SLOPE, inplace=True)).add_(x)


class _DenseProjection(torch.autograd.Function):
    """LReLU(Conv1x1(concat(members))) that saves the members, not their concatenation.

    Computed as a sum of per-member matrix products on channels-last rows: no concat
    in forward or backward (a channel concat of channels-last maps is an interleaving
    copy, ~3x slower than the products themselves), and memory grows with n, not n^2.
    The activation is fused so only the output is saved (the next conv saves it anyway).
    """

    @staticmethod
    def forward(ctx, weight, bias, *members):
        dtype = members[0].dtype
        for m in members[1:]:  # autocast can mix dtypes; compute in the widest one
            dtype = torch.promote_types(dtype, m.dtype)
        members = [m.to(dtype).contiguous(memory_format=torch.channels_last) for m in members]
        first = members[0]
        c = first.shape[1]
        blocks = weight.reshape(weight.shape[0], -1).to(first.dtype).split(c, dim=1)
        out = torch.empty((first.shape[0], weight.shape[0], *first.shape[2:]), dtype=first.dtype,
                          device=first.device, memory_format=torch.channels_last)
        out_rows = _rows(out)
        torch.addmm(bias.to(first.dtype), _rows(first), blocks[0].t(), out=out_rows)
        for member, block in zip(members[1:], blocks[1:]):
            torch.addmm(out_rows, _rows(member), block.t(), out=out_rows)  # counted by flop_counter
        F.leaky_relu(out, SLOPE, inplace=True)
        ctx.save_for_backward(weight, bias, out, *members)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        weight, bias, out, *members = ctx.saved_tensors
        dtype, c = members[0].dtype, members[0].shape[1]
        # LeakyReLU keeps the sign, so the saved output gives the mask.
        grad_out = torch.where(out > 0, grad_out, grad_out * SLOPE).to(dtype)
        grad = _rows(grad_out.contiguous(memory_format=torch.channels_last))
        blocks = weight.reshape(weight.shape[0], -1).to(dtype).split(c, dim=1)
        grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.cat([grad.t() @ _rows(m) for m in members], dim=1)
            grad_w = grad_w.view_as(weight).to(weight.dtype)
        if ctx.needs_input_grad[1]:
            grad_b = grad.sum(0).to(bias.dtype)
        batch, _, height, width = members[0].shape
        grads_members = [
            (grad @ block).view(batch, height, width, c).permute(0, 3, 1, 2) if needed else None
            for block, needed in zip(blocks, ctx.needs_input_grad[2:])]
        return (grad_w, grad_b, *grads_members)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B*H*W, C]; a view when t is channels-last."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


class DenseResidualGroup(nn.Module):
    """DRG(n): n residual blocks with dense 1x1 fusions; optional additive skips per block."""

    def __init__(self, channels: int, n_blocks: int):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"a dense residual group needs at least 1 block, got {n_blocks}")
        self.channels = channels
        self.blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(n_blocks))
        self.projections = nn.ModuleList(
            nn.Conv2d((i + 2) * channels, channels, 1) for i in range(n_blocks))

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, skips: Optional[list] = None, keep_members: bool = True,
                workspace: Optional[dict] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns (s_n, [r_1..r_n]); `skips[i]` is added to the input of block i.

        Without autograd the entries of `skips` are released (set to None) as soon as they
        are used, members are only kept if `keep_members`, and the accumulator is taken
        from `workspace` (a dict shared by the calls of one forward) to avoid re-allocating
        and page-faulting a large buffer for every group.
        """
        if skips is not None and len(skips) != len(self.blocks):
            raise ValueError(f"DRG({len(self.blocks)}) got {len(skips)} skips")
        if torch.is_grad_enabled():
            return self._forward_autograd(x, skips)
        return self._forward_push(x, skips, keep_members, workspace)

    def _forward_autograd(self, x, skips):
        members = [x]
        state = x
        for i, (block, proj) in enumerate(zip(self.blocks, self.projections)):
            members.append(block(state if skips is None else state + skips[i]))
            state = _DenseProjection.apply(proj.weight, proj.bias, *members)
        return state, members[1:]

    def _forward_push(self, x, skips, keep_members, workspace):
        # Member m_j (m_0 = x, m_j = r_j) enters every later projection i >= max(j-1, 0).
        # As soon as a member exists, its contribution to all of them is added with one
        # matrix product into an accumulator acc = [pre-activation of s_1 | ... | s_n]
        # (channels-last rows): no concatenation, no strided member copies, and members
        # that are not needed as skips are freed at once.
        batch, _, height, width = x.shape
        c, n = self.channels, len(self.blocks)
        # Cast to the activations' dtype: the out=/in-place products below are not autocast.
        weights = [p.weight.reshape(c, -1).to(x.dtype) for p in self.projections]
        bias = torch.cat([p.bias for p in self.projections]).to(x.dtype)

        def push_weight(j: int) -> torch.Tensor:  # [C, C * (projections member j enters)]
            return torch.cat([w[:, j * c:(j + 1) * c] for w in weights[max(j - 1, 0):]]).t()

        acc = _scratch(workspace, (batch, height, width, n * c), x)
        acc_rows = acc.view(-1, n * c)
        torch.addmm(bias, _rows(x), push_weight(0), out=acc_rows)
        members = []
        state = x
        # One buffer holds s_i for all steps (s_{i-1} is dead once r_i exists); it is a
        # fresh tensor, never the caller's x nor the reusable accumulator.
        state_rows = x.new_empty(batch, height, width, c)
        for i, block in enumerate(self.blocks):
            if skips is not None:
                skip, skips[i] = skips[i], None
                state = state.add_(skip) if i > 0 else state + skip
                del skip
            r = block(state)
            tail = acc_rows[:, i * c:]
            # addmm with out=its own input, not addmm_: same in-place product, but visible
            # to torch.utils.flop_counter (which does not count addmm_).
            torch.addmm(tail, _rows(r).to(acc.dtype), push_weight(i + 1), out=tail)
            if keep_members:
                members.append(r)
            del r
            # Copy the strided block out first: a LeakyReLU on dense memory is much faster.
            state_rows.copy_(acc[..., i * c:(i + 1) * c])
            state = F.leaky_relu(state_rows, SLOPE, inplace=True).permute(0, 3, 1, 2)
        return state, members


def _scratch(workspace: Optional[dict], shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor, reused from `workspace` when one of this shape exists."""
    if workspace is None:
        return like.new_empty(shape)
    key = (shape, like.dtype, like.device)
    if key not in workspace:
        workspace[key] = like.new_empty(shape)
    return workspace[key]
