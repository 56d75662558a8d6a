"""Projections: how a LIF layer's input current is computed from one source's output.

A projection maps its source's output ``x`` (a vector of the source's size) to a
current vector of the target layer's size, in exact integer arithmetic::

    x'  = reshape(x, in_shape)                     row-major, (C, *spatial); pure re-indexing
    p   = sumpool(x')  (if pool)                   p[c, q] = sum_k x'[c, q s_p - pad_p + k]
    I   = W p          (dense: W is [size, prod(p.shape)], p flattened)
    I   = conv(p, W)   (if conv: W is [C_out, C/groups, *kernel])
        I[o_c, o] = sum_{c' < C/groups} sum_k W[o_c, c', k] p[g C/groups + c', o s - pad + k d]
        with g = o_c // (C_out/groups), flattened row-major as (C_out, *out)

``k`` runs over the kernel's positions (every spatial dimension), ``s``, ``pad``
and ``d`` are the per-dimension stride, padding and dilation; entries outside
the map (padding) are zero.  The spatial output size is
``floor((n + 2 pad - d (k - 1) - 1) / s) + 1``, as in PyTorch.  A dense
projection without a pool is the plain ``I = W x``.  One or two spatial
dimensions (``Conv1d`` / ``Conv2d``, ``SumPool1d`` / ``SumPool2d``); a depthwise
convolution is ``groups = C``.

A pool must tile its map exactly (no entry left over), so no event is silently
dropped.  Pooling sums: a source's spikes become small counts (at most the kernel's size)
that the weights then multiply, so ``W (P x) = (W P) x`` holds exactly and an
event-driven machine can route each spike through the pool to its targets.

Every sum is exact: the network's validation bounds each partial sum by
``acc_bits`` (at most 48 bits), so float64 arithmetic holds every partial sum
exactly (the convolutions gather their inputs with ``unfold`` and multiply
matrices: no transform that would round).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Pool", "Conv", "Projection", "out_size", "MAX_GATHER"]

MAX_GATHER = 1 << 24
"""The most values a pool or a convolution may gather per sample (``unfold``'s
columns: channels x window x output positions; 128 MB as float64).  A kernel and a
map that each fit in a small file can otherwise ask for terabytes."""

def out_size(n: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """The output length of a convolution or pooling along one dimension (PyTorch's rule)."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _plane(values: tuple[int, ...], pad: int) -> tuple[int, int]:
    """A 1-D geometry as the 2-D one of a ``(1, L)`` map (``unfold`` is 2-D)."""
    return (pad, *values) if len(values) == 1 else tuple(values)


def _tuple(value, dims: int, what: str) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) and not isinstance(value, bool) \
        else tuple(value)
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool)
                                      for v in values):
        raise ValueError(f"{what} must be {dims} integer(s), not {value!r}")
    return values


def _gather(what: str, channels: int, window: tuple[int, ...], positions) -> None:
    """Refuse a pool or convolution that would gather more than :data:`MAX_GATHER`
    values per sample."""
    values = channels * math.prod(window) * math.prod(positions)
    if values > MAX_GATHER:
        raise ValueError(f"the {what} gathers {values} values per sample ({channels} "
                         f"channel(s) x window {tuple(window)} x {math.prod(positions)} "
                         f"output positions), more than {MAX_GATHER}")


@dataclass(frozen=True)
class Pool:
    """Sum pooling over the spatial dimensions: ``kernel``, ``stride`` (default the
    kernel: non-overlapping windows) and zero ``padding`` per dimension."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None

    def resolved(self, dims: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(kernel, stride, padding)`` as ``dims``-tuples (defaults filled in)."""
        kernel = _tuple(self.kernel, dims, "pool kernel")
        stride = kernel if self.stride is None else _tuple(self.stride, dims, "pool stride")
        padding = (0,) * dims if self.padding is None \
            else _tuple(self.padding, dims, "pool padding")
        return kernel, stride, padding

    def to_dict(self) -> dict:
        return {"kernel": list(self.kernel),
                "stride": None if self.stride is None else list(self.stride),
                "padding": None if self.padding is None else list(self.padding)}


@dataclass(frozen=True)
class Conv:
    """A convolution's geometry (the kernel is the projection's weight): per spatial
    dimension ``stride``, zero ``padding`` and ``dilation``; ``groups`` splits the
    input and output channels into that many independent groups."""

    stride: tuple[int, ...] | int = 1
    padding: tuple[int, ...] | int = 0
    dilation: tuple[int, ...] | int = 1
    groups: int = 1

    def resolved(self, dims: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (_tuple(self.stride, dims, "conv stride"),
                _tuple(self.padding, dims, "conv padding"),
                _tuple(self.dilation, dims, "conv dilation"))

    def to_dict(self) -> dict:
        def plain(v):
            return v if isinstance(v, int) else list(v)
        return {"stride": plain(self.stride), "padding": plain(self.padding),
                "dilation": plain(self.dilation), "groups": self.groups}


@dataclass
class Projection:
    """An edge into a LIF layer (module docstring).  ``weight``: int64, ``[size,
    source size]`` for a plain dense edge.  ``in_shape``: the source's output as
    ``(C, *spatial)``, given exactly when there is a ``pool`` or a ``conv``.
    ``recurrent``: the edge delivers the previous step's output."""

    source: str
    weight: torch.Tensor
    recurrent: bool = False
    in_shape: tuple[int, ...] | None = None
    pool: Pool | None = None
    conv: Conv | None = None

    # ------------------------------------------------------------ geometry
    @property
    def structured(self) -> bool:
        """Whether the source is viewed as a feature map (a pool or a convolution)."""
        return self.pool is not None or self.conv is not None

    @property
    def pooled_shape(self) -> tuple[int, ...] | None:
        """The shape the weights read: ``in_shape`` after the pool (``None``: the plain vector)."""
        if self.in_shape is None:
            return None
        if self.pool is None:
            return tuple(self.in_shape)
        channels, *spatial = self.in_shape
        kernel, stride, padding = self.pool.resolved(len(spatial))
        return (channels, *(out_size(n, k, s, p) for n, k, s, p
                            in zip(spatial, kernel, stride, padding, strict=True)))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The current's shape: ``(C_out, *out)`` for a convolution, ``(size,)`` otherwise."""
        if self.conv is None:
            return (int(self.weight.shape[0]),)
        channels, *spatial = self.pooled_shape
        stride, padding, dilation = self.conv.resolved(len(spatial))
        kernel = self.weight.shape[2:]
        return (int(self.weight.shape[0]),
                *(out_size(n, k, s, p, d) for n, k, s, p, d
                  in zip(spatial, kernel, stride, padding, dilation, strict=True)))

    def check(self, source_size: int, size: int) -> None:
        """Raise ValueError naming the first geometry rule the projection breaks for a
        source of ``source_size`` values and a target of ``size`` neurons (the
        message names the source, not the layer)."""
        w = self.weight
        if not isinstance(w, torch.Tensor):
            raise ValueError(f"weight from {self.source!r} must be a tensor")
        if not self.structured:
            if tuple(w.shape) != (size, source_size):
                raise ValueError(f"weight from {self.source!r} has shape {tuple(w.shape)}, "
                                 f"expected {(size, source_size)}")
            if self.in_shape is not None:
                raise ValueError(f"input from {self.source!r}: in_shape "
                                 f"{tuple(self.in_shape)} without a pool or a convolution")
            return
        try:
            self.check_map(source_size)
            self._check_weight(size)
        except ValueError as exc:
            raise ValueError(f"input from {self.source!r}: {exc}") from None

    def _check_weight(self, size: int) -> None:
        w = self.weight
        pooled = self.pooled_shape
        if self.conv is None:
            if tuple(w.shape) != (size, math.prod(pooled)):
                raise ValueError(f"the weight has shape {tuple(w.shape)}, expected "
                                 f"{(size, math.prod(pooled))} (the pooled map {pooled} "
                                 f"flattened)")
            return
        self._check_conv(pooled)
        if math.prod(self.out_shape) != size:
            raise ValueError(f"the convolution's output {self.out_shape} holds "
                             f"{math.prod(self.out_shape)} values, not the layer's {size}")

    def check_map(self, source_size: int) -> None:
        """Raise ValueError for an ``in_shape`` or a pool that does not fit a source of
        ``source_size`` values (the source side of :meth:`check`)."""
        shape = self.in_shape
        if shape is None:
            raise ValueError("a pool or a convolution needs the source's in_shape (C, *spatial)")
        if not (2 <= len(shape) <= 3 and all(isinstance(n, int) and not isinstance(n, bool)
                                             and n >= 1 for n in shape)):
            raise ValueError(f"in_shape {shape!r} is not (C, L) or (C, H, W) of positive "
                             f"integers")
        if math.prod(shape) != source_size:
            raise ValueError(f"in_shape {tuple(shape)} holds {math.prod(shape)} values, not the "
                             f"source's {source_size}")
        if self.pool is not None:
            kernel, stride, padding = self.pool.resolved(len(shape) - 1)
            if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
                raise ValueError(f"pool kernel {kernel}, stride {stride}, padding {padding}: "
                                 f"kernel and stride must be >= 1, padding >= 0")
            if any(2 * p > k for k, p in zip(kernel, padding, strict=True)):
                raise ValueError(f"pool padding {padding} is more than half the kernel "
                                 f"{kernel}")
            if min(self.pooled_shape[1:]) < 1:
                raise ValueError(f"pool kernel {kernel} is larger than the map {shape[1:]}")
            left = tuple((n + 2 * p - k) % s for n, k, s, p
                         in zip(shape[1:], kernel, stride, padding, strict=True))
            if any(left):
                raise ValueError(f"pool kernel {kernel}, stride {stride}, padding {padding} "
                                 f"does not tile the map {tuple(shape[1:])} ({left} left over "
                                 f"per dimension)")
            _gather("pool", shape[0], kernel, self.pooled_shape[1:])

    def _check_conv(self, pooled: tuple[int, ...]) -> None:
        w = self.weight
        channels, *spatial = pooled
        dims = len(spatial)
        groups = self.conv.groups
        if w.dim() != dims + 2:
            raise ValueError(f"the kernel has shape {tuple(w.shape)}, expected "
                             f"[C_out, C_in/groups, {', '.join('k' * dims)}] for "
                             f"{dims} spatial dimension(s)")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"groups must be a positive integer, not {groups!r}")
        if channels % groups or w.shape[0] % groups:
            raise ValueError(f"groups={groups} does not divide the {channels} input channels "
                             f"and the {w.shape[0]} output channels")
        if w.shape[1] != channels // groups:
            raise ValueError(f"the kernel has {w.shape[1]} input channels per group, expected "
                             f"{channels // groups} ({channels} channels / groups={groups})")
        if min(w.shape) < 1:
            raise ValueError(f"the kernel has shape {tuple(w.shape)} with an empty dimension")
        stride, padding, dilation = self.conv.resolved(dims)
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
            raise ValueError(f"conv stride {stride}, padding {padding}, dilation {dilation}: "
                             f"stride and dilation must be >= 1, padding >= 0")
        if min(self.out_shape[1:]) < 1:
            raise ValueError(f"the kernel {tuple(w.shape[2:])} (dilation {dilation}) does not "
                             f"fit the map {tuple(spatial)} with padding {padding}")
        _gather("convolution", channels, tuple(w.shape[2:]), self.out_shape[1:])

    # ----------------------------------------------------------- arithmetic
    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (``[B, source size]``, float64) as the map the weight reads:
        ``[B, *pooled_shape]`` (the sums of the pool's windows, or the map itself)."""
        batch = x.shape[0]
        channels, *spatial = self.in_shape
        if self.pool is None:
            return x.reshape(batch, *self.in_shape)
        p = x.reshape(batch, channels, *([1] * (2 - len(spatial))), *spatial)
        kernel, stride, padding = (_plane(v, d) for v, d
                                   in zip(self.pool.resolved(len(spatial)), (1, 1, 0),
                                          strict=True))
        cols = F.unfold(p, kernel, padding=padding, stride=stride)
        return cols.view(batch, channels, -1, cols.shape[-1]).sum(dim=2) \
            .view(batch, *self.pooled_shape)

    def linear(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The projection of ``x`` (``[B, source size]``, float64) with ``weight``
        (float64) in place of the projection's own; ``[B, size]`` float64 (also the
        float model of an imported graph).  Pools and convolutions are sums of
        products gathered by ``unfold`` and multiplied by a matrix product, with no
        transform that would round an integer."""
        if not self.structured:
            return x @ weight.T
        batch = x.shape[0]
        spatial = self.in_shape[1:]
        p = self.pooled(x)
        p = p.reshape(batch, p.shape[1], *([1] * (2 - len(spatial))), *p.shape[2:])
        if self.conv is None:
            return p.reshape(batch, -1) @ weight.T
        stride, padding, dilation = (_plane(v, d) for v, d
                                     in zip(self.conv.resolved(len(spatial)), (1, 0, 1),
                                            strict=True))
        kernel = _plane(tuple(weight.shape[2:]), 1)
        groups = self.conv.groups
        cols = F.unfold(p, kernel, dilation=dilation, padding=padding, stride=stride)
        cols = cols.view(batch, groups, -1, cols.shape[-1])
        w = weight.reshape(groups, weight.shape[0] // groups, -1)
        return (w @ cols).reshape(batch, -1)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The current ``[B, size]`` (int64) of the source's output ``x`` (``[B, source size]``,
        int64); exact for a validated network (module docstring)."""
        return self.linear(x.to(torch.float64), self.weight.to(torch.float64)).to(torch.int64)

    def abs_row_sums(self) -> torch.Tensor:
        """Per target, ``sum_j |M[i, j]|`` over the equivalent dense matrix ``M`` bounded
        from above (exact without a pool): the worst case of ``|I_i|`` per unit of input."""
        size = math.prod(self.in_shape) if self.structured else self.weight.shape[1]
        ones = torch.ones(1, size, dtype=torch.float64)
        return self.linear(ones, self.weight.abs().to(torch.float64))[0].to(torch.int64)

    def fanout(self) -> torch.Tensor:
        """Per source entry (int64, the source's size), the synaptic operations one
        event causes: the (pool window, weight) paths from it to a target, so a
        plain dense edge's fan-out is the layer's size."""
        if not self.structured:
            return torch.full((self.weight.shape[1],), self.weight.shape[0], dtype=torch.int64)
        x = torch.zeros(1, math.prod(self.in_shape), dtype=torch.float64, requires_grad=True)
        self.linear(x, torch.ones_like(self.weight, dtype=torch.float64)).sum().backward()
        return x.grad[0].round().to(torch.int64)

    def dense(self) -> torch.Tensor:
        """The equivalent dense matrix ``[size, source size]`` (int64): column ``j`` is
        the current of a unit event at source entry ``j``."""
        if not self.structured:
            return self.weight.clone()
        n = math.prod(self.in_shape)
        return self.apply(torch.eye(n, dtype=torch.int64)).T.contiguous()

    def to_dict(self) -> dict:
        """The geometry (JSON-able; the weight is stored separately)."""
        return {"in_shape": None if self.in_shape is None else list(self.in_shape),
                "pool": None if self.pool is None else self.pool.to_dict(),
                "conv": None if self.conv is None else self.conv.to_dict()}
