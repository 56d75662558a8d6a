"""The NIR nodes between two neuron nodes, as one projection (the edge side of :mod:`.nirgraph`).

Between a source (the Input or a neuron node) and a neuron node a NIR graph
may hold a chain of single-input nodes: ``Flatten`` / ``Identity`` (pure
re-indexing), pools (``SumPool2d``, ``AvgPool2d``) and weight nodes
(``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``).  The chain is one linear map
plus a bias, so it becomes one :class:`~.projection.Projection` with a float64
weight and a bias vector of the target's size:

* at most one pool, then one weight node (the common case): the projection
  keeps the pool and the shared kernel (an ``AvgPool2d`` is a sum pool with
  the weight divided by the window's size: exact);
* anything else (two weight nodes in a row, a pool after a weight, ...): the
  chain is folded exactly into one dense matrix ``M = W_k ... W_1`` (pools and
  convolutions written out as matrices) and bias ``b_k + W_k (... b_1)``, if
  that matrix has at most :data:`MAX_FOLDED` entries.

A chain that cannot become a projection raises :class:`NirError` naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .projection import Conv, Pool, Projection

__all__ = ["NirError", "ChainStep", "chain_projection", "MAX_FOLDED", "MAX_NEURONS", "WEIGHTS",
           "POOLS"]

WEIGHTS = ("Affine", "Linear", "Conv1d", "Conv2d")
POOLS = ("SumPool2d", "AvgPool2d")
MAX_FOLDED = 1 << 23
"""The largest dense matrix (entries) a chain of weight nodes is folded into (also the
identity of a direct edge); each one is checked before it is built."""
MAX_NEURONS = 1 << 16
"""The most neurons an imported network may have in all its layers (a convolution's
output or a scalar-parameter population may otherwise come from a file of a few KB)."""


class NirError(ValueError):
    """A NIR graph that cannot become an integer network; the message names the node."""


@dataclass
class ChainStep:
    """One node of a chain: its name, NIR kind and the node itself."""

    name: str
    kind: str
    node: object


def _ints(name: str, value, dims: int, what: str) -> tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value))
    if arr.size == 1:
        arr = np.repeat(arr, dims)
    if arr.shape != (dims,) or not np.all(arr == np.round(arr)):
        raise NirError(f"node {name!r}: {what} {value!r} is not {dims} integer(s)")
    return tuple(int(v) for v in arr)


def _array(name: str, node, attr: str) -> np.ndarray:
    value = getattr(node, attr, None)
    if value is None:
        raise NirError(f"node {name!r}: parameter {attr!r} is missing")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise NirError(f"node {name!r}: parameter {attr!r} is not numeric") from exc
    if not np.all(np.isfinite(arr)):
        raise NirError(f"node {name!r}: parameter {attr!r} has non-finite values")
    return arr


def _pool(step: ChainStep, source: str,
          shape: tuple[int, ...]) -> tuple[Pool, float, tuple[int, ...]]:
    """The sum pool of a pool node on a map of ``shape``, the weight factor (1, or
    1/window for an average) and the pooled shape."""
    if len(shape) != 3:
        raise NirError(f"node {step.name!r}: a {step.kind} needs a (C, H, W) input, not "
                       f"{shape}")
    node = step.node
    kernel = _ints(step.name, node.kernel_size, 2, "kernel_size")
    stride = _ints(step.name, node.stride, 2, "stride")
    padding = _ints(step.name, getattr(node, "padding", 0), 2, "padding")
    pool = Pool(kernel, stride, padding)
    probe = Projection(source, torch.zeros(1, 1), in_shape=shape, pool=pool)
    try:
        probe.check_map(math.prod(shape))
    except ValueError as exc:
        raise NirError(f"node {step.name!r}: {exc}") from None
    factor = 1.0 / math.prod(kernel) if step.kind == "AvgPool2d" else 1.0
    return pool, factor, probe.pooled_shape


def _padding(name: str, padding, dilation: tuple[int, ...], kernel) -> object:
    if not isinstance(padding, str):
        return padding
    reach = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
    if padding == "valid":
        return (0,) * len(reach)
    if padding == "same" and all(r % 2 == 0 for r in reach):
        return tuple(r // 2 for r in reach)
    raise NirError(f"node {name!r}: padding {padding!r} is not 'valid' or a 'same' that pads "
                   f"both sides equally")


def _conv(step: ChainStep, source: str, pool: Pool | None, factor: float,
          shape: tuple[int, ...], pooled: tuple[int, ...]):
    """A convolution node on a map of ``shape`` (``pooled`` after ``pool``): the
    projection (float kernel) and the bias broadcast over the output positions."""
    node, name = step.node, step.name
    dims = 1 if step.kind == "Conv1d" else 2
    weight = _array(name, node, "weight")
    if len(pooled) != dims + 1:
        raise NirError(f"node {name!r}: a {step.kind} needs a (C, {'L' if dims == 1 else 'H, W'})"
                       f" input, not {pooled}")
    if weight.ndim != dims + 2:
        raise NirError(f"node {name!r}: the kernel has shape {weight.shape}, expected "
                       f"[C_out, C_in/groups, {', '.join('k' * dims)}]")
    dilation = _ints(name, node.dilation, dims, "dilation")
    padding = _padding(name, node.padding, dilation, weight.shape[2:])
    conv = Conv(_ints(name, node.stride, dims, "stride"), _ints(name, padding, dims, "padding"),
                dilation, int(np.asarray(node.groups)))
    proj = Projection(source, torch.from_numpy(weight * factor), in_shape=shape, pool=pool,
                      conv=conv)
    try:
        size = math.prod(proj.out_shape)
    except ValueError:  # a kernel of the wrong rank: check() names it
        size = 0
    try:
        proj.check(math.prod(shape), size)
    except ValueError as exc:
        raise NirError(f"node {name!r}: {exc}") from None
    if size > MAX_NEURONS:
        raise NirError(f"node {name!r}: the convolution's output {proj.out_shape} has {size} "
                       f"values, more than the {MAX_NEURONS} neurons an imported network may "
                       f"have")
    bias = getattr(node, "bias", None)
    bias = np.zeros(weight.shape[0]) if bias is None else _array(name, node, "bias")
    if bias.shape != (weight.shape[0],):
        raise NirError(f"node {name!r}: bias has shape {bias.shape}, expected "
                       f"({weight.shape[0]},)")
    return proj, np.repeat(bias, math.prod(proj.out_shape[1:]))


def _dense(step: ChainStep, size: int) -> tuple[np.ndarray, np.ndarray]:
    weight = _array(step.name, step.node, "weight")
    if weight.ndim != 2:
        raise NirError(f"node {step.name!r}: weight has shape {weight.shape}, expected "
                       f"[out, in]")
    if weight.shape[1] != size:
        raise NirError(f"node {step.name!r}: weight has {weight.shape[1]} inputs but its input "
                       f"has {size} values")
    bias = _array(step.name, step.node, "bias") if step.kind == "Affine" \
        else np.zeros(weight.shape[0])
    if bias.shape != (weight.shape[0],):
        raise NirError(f"node {step.name!r}: bias has shape {bias.shape}, expected "
                       f"({weight.shape[0]},)")
    return weight, bias


def _single(source: str, shape: tuple[int, ...], steps: list[ChainStep]):
    """A ``[weight]`` or ``[pool, weight]`` chain as ``(projection, bias, out shape)``
    keeping the pool and the shared kernel."""
    pool, factor, pooled = (None, 1.0, shape) if len(steps) == 1 \
        else _pool(steps[0], source, shape)
    step = steps[-1]
    if step.kind.startswith("Conv"):
        proj, bias = _conv(step, source, pool, factor, shape, pooled)
        return proj, bias, proj.out_shape
    weight, bias = _dense(step, math.prod(pooled))
    return (Projection(source, torch.from_numpy(weight * factor),
                       in_shape=shape if pool else None, pool=pool), bias, (weight.shape[0],))


def _matrix_of(step: ChainStep, what: str, linear, n: int, out: int) -> np.ndarray:
    """The ``[out, n]`` matrix of the linear map ``linear`` (``[B, n] -> [B, out]``,
    float64), checked against :data:`MAX_FOLDED` first and built from the identity a
    block of rows at a time (never the whole ``n x n`` identity at once)."""
    if out * n > MAX_FOLDED:
        raise NirError(f"node {step.name!r}: folding the chain would write this {what} as a "
                       f"{out} x {n} matrix, more than {MAX_FOLDED} entries")
    matrix = np.empty((out, n))
    rows = max(1, MAX_FOLDED // max(1, n))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = torch.zeros(stop - start, n, dtype=torch.float64)
        block[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        matrix[:, start:stop] = linear(block).reshape(stop - start, out).T.numpy()
    return matrix


def _as_matrix(step: ChainStep, source: str, shape: tuple[int, ...]):
    """One chain node as ``(matrix, bias, output shape)`` (float64 numpy)."""
    n = math.prod(shape)
    if step.kind in POOLS:
        pool, factor, pooled = _pool(step, source, shape)
        probe = Projection(source, torch.zeros(1, 1), in_shape=shape, pool=pool)
        matrix = _matrix_of(step, "pool", probe.pooled, n, math.prod(pooled)) * factor
        return matrix, np.zeros(matrix.shape[0]), pooled
    if step.kind.startswith("Conv"):
        proj, bias = _conv(step, source, None, 1.0, shape, shape)
        matrix = _matrix_of(step, "convolution", lambda x: proj.linear(x, proj.weight), n,
                            math.prod(proj.out_shape))
        return matrix, bias, proj.out_shape
    weight, bias = _dense(step, n)
    return weight, bias, (weight.shape[0],)


def chain_projection(source: str, shape: tuple[int, ...], steps: list[ChainStep]):
    """The projection of the chain ``steps`` (source to target order) from ``source``
    of output ``shape``: ``(Projection with float64 weight, bias of the target's
    size, output shape)``; a chain without a weight node is the identity."""
    if not any(s.kind in WEIGHTS or s.kind in POOLS for s in steps):
        n = math.prod(shape)
        if n * n > MAX_FOLDED:
            raise NirError(f"node {source!r}: a direct edge of {n} values would be an {n} x {n} "
                           f"identity matrix, more than {MAX_FOLDED} entries; put a weight node "
                           f"between")
        return Projection(source, torch.eye(n, dtype=torch.float64)), np.zeros(n), (n,)
    linear = [s for s in steps if s.kind in WEIGHTS + POOLS]
    kinds = ["pool" if s.kind in POOLS else "weight" for s in linear]
    if kinds in (["weight"], ["pool", "weight"]):
        return _single(source, shape, linear)
    matrix, bias, now = None, None, shape
    for step in linear:
        m, b, now = _as_matrix(step, source, now)
        cols = m.shape[1] if matrix is None else matrix.shape[1]
        if m.shape[0] * cols > MAX_FOLDED:
            raise NirError(f"node {step.name!r}: folding the chain into one dense matrix needs "
                           f"{m.shape[0]} x {cols} entries, more than {MAX_FOLDED}")
        matrix, bias = (m, b) if matrix is None else (m @ matrix, m @ bias + b)
    return Projection(source, torch.from_numpy(matrix)), bias, now
