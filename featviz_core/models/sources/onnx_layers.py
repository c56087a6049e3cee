"""ONNX linear algebra and normalisation operators (Gemm, BatchNormalization, InstanceNormalization,
LayerNormalization, GroupNormalization, LRN, Einsum) as PyTorch modules, registered with :func:`.onnx_ops.op`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .onnx_ops import NodeContext, UnsupportedOp, first_input, generic, op

__all__ = ["Linear"]


class Linear(nn.Linear):
    """ONNX Gemm with a constant weight, as ``nn.Linear`` (flattening nothing: Gemm takes 2-D input)."""


@op("Gemm")
def _gemm(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    trans_a, trans_b = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    weight, bias = ctx.const(1), ctx.const(2)
    bias_ok = not ctx.has(2) or (bias is not None and bias.ndim <= 1)
    if (
        weight is not None
        and weight.ndim == 2
        and weight.is_floating_point()
        and alpha == 1.0
        and bias_ok
        and not trans_a
        and (beta == 1.0 or not ctx.has(2))
    ):
        w = weight if trans_b else weight.t()
        layer = Linear(int(w.shape[1]), int(w.shape[0]), bias=bias is not None, device="meta")
        with torch.no_grad():
            layer.weight = nn.Parameter(w.contiguous().clone())
            if bias is not None:
                layer.bias = nn.Parameter(torch.broadcast_to(bias, (int(w.shape[0]),)).contiguous().clone())
        return layer.eval(), first_input(ctx)

    def gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = (a.t() if trans_a else a) @ (b.t() if trans_b else b)
        y = y * alpha if alpha != 1.0 else y
        return y if c is None else y + (c * beta if beta != 1.0 else c)

    return generic(ctx, gemm)


@op("BatchNormalization")
def _batchnorm(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    eps = float(ctx.attr("epsilon", 1e-5))
    params = [ctx.const(i) for i in (1, 2, 3, 4)]
    if len([o for o in ctx.node.output if o]) > 1:
        raise UnsupportedOp("BatchNormalization in training mode")
    rank = ctx.rank(0)
    if all(p is not None for p in params) and rank in (3, 4, 5):
        scale, bias, mean, var = params  # type: ignore[misc]
        kind = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank]
        layer = kind(int(scale.numel()), eps=eps)
        with torch.no_grad():
            layer.weight = nn.Parameter(scale.reshape(-1).float().clone())
            layer.bias = nn.Parameter(bias.reshape(-1).float().clone())
            layer.running_mean.copy_(mean.reshape(-1))
            layer.running_var.copy_(var.reshape(-1))
        return layer.eval(), first_input(ctx)
    return generic(ctx, lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, eps))


@op("InstanceNormalization")
def _instancenorm(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    eps = float(ctx.attr("epsilon", 1e-5))
    return generic(ctx, lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=eps))


@op("LayerNormalization")
def _layernorm(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    axis, eps = int(ctx.attr("axis", -1)), float(ctx.attr("epsilon", 1e-5))
    if len([o for o in ctx.node.output if o]) > 1:
        raise UnsupportedOp("LayerNormalization with mean and inverse deviation outputs")

    def layer_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape[axis % x.ndim :]
        weight = torch.broadcast_to(scale, shape)
        return F.layer_norm(x, shape, weight, None if bias is None else torch.broadcast_to(bias, shape), eps)

    return generic(ctx, layer_norm)


@op("GroupNormalization")
def _groupnorm(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    groups, eps = int(ctx.attr("num_groups")), float(ctx.attr("epsilon", 1e-5))

    def group_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if scale.numel() != channels:  # opset 18: one scale per group
            scale, bias = (
                scale.repeat_interleave(channels // groups),
                bias.repeat_interleave(channels // groups),
            )
        return F.group_norm(x, groups, scale.reshape(-1), bias.reshape(-1), eps)

    return generic(ctx, group_norm)


@op("LRN")
def _lrn(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    size = int(ctx.attr("size"))
    alpha, beta, bias = (
        float(ctx.attr("alpha", 1e-4)),
        float(ctx.attr("beta", 0.75)),
        float(ctx.attr("bias", 1.0)),
    )
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2

    def lrn(x: torch.Tensor) -> torch.Tensor:
        squared = (x * x).transpose(1, -1)
        padded = F.pad(squared, (before, after))
        total = padded.unfold(-1, size, 1).sum(-1).transpose(1, -1)
        return x / (bias + alpha / size * total) ** beta

    return generic(ctx, lrn, first_input(ctx))


@op("Einsum")
def _einsum(ctx: NodeContext) -> tuple[nn.Module, list[str]]:
    equation = str(ctx.attr("equation")).replace(" ", "")
    return generic(ctx, lambda *xs: torch.einsum(equation, *xs))
