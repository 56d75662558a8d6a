"""Literal constructors of small integer networks for the tests: ``T`` (an int64
tensor), ``proj``, ``lif``, ``li`` and ``const``."""

from __future__ import annotations

import torch
from spikeforge.golden.integer import LIFLayer, Operand, Projection


def T(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def proj(source: str, weight, recurrent: bool = False) -> Projection:
    return Projection(source, T(weight), recurrent=recurrent)


def lif(name: str, inputs: list[Projection], *, alpha, theta=None, bias=None,
        reset: str = "subtract", v_reset: int = 0, spiking: bool = True) -> LIFLayer:
    size = len(alpha)
    theta = theta if theta is not None else [1] * size
    bias = bias if bias is not None else [0] * size
    return LIFLayer(name, size, T(alpha), T(theta), T(bias), inputs, reset=reset,
                    v_reset=v_reset, spiking=spiking)


def li(name: str, inputs: list[Projection], *, alpha, theta=None, bias=None) -> LIFLayer:
    return lif(name, inputs, alpha=alpha, theta=theta, bias=bias, reset="none", spiking=False)


def const(values) -> Operand:
    return Operand(const=T(values))
