"""Tasks, deterministic splits and input encoders.

Intra-token: ``digits``, scikit-learn's bundled 8x8 handwritten digits (1797
images, pixel values 0..16), shown to the network for ``T`` virtual steps.

Inter-token: ``recall`` (associative recall: key-value pairs, then a query;
the token index is real time) and ``selective-copy`` (data tokens scattered
among blanks, to be reproduced in order after a go marker).

The PRNG used wherever the hardware side must reproduce a stream exactly is
``hash32``: Chris Wellons' *lowbias32* integer hash, chained over the
counter words, all arithmetic modulo 2**32::

    mix(x):  x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
    hash32(w0, w1, ..., wn) = mix(... mix(mix(w0) ^ w1) ... ^ wn)

Rate coding of a value ``p`` in ``0..p_max`` for sample id ``n`` (its index in
the full data set), step ``t`` and channel ``i``: a spike iff
``(hash32(seed, n, t, i) >> 16) * p_max < p * 65536``, i.e. with probability
exactly ``p / p_max`` over the 16-bit draw.  Direct coding presents the integer
values themselves (signed int8) at every step.  Delta coding (temporal-difference
coding, the input a change detector sends) presents the change of each value since
the previous step, from nothing before the first::

    x[t] = v[t] - v[t - 1],   v[-1] = 0        (signed int8)

so that ``sum_{tau <= t} x[tau] = v[t]``; a static image (``v[t] = v``) gives its
values once, at onset, and nothing after: ``x[0] = v``, ``x[t] = 0`` for ``t >= 1``.

Event digits (``event_digits``): the emulated DVS recordings of the digits
(:mod:`.dvs`, N-MNIST's 2 x 34 x 34 format, three saccades in 300 ms) reduced to
64 inputs for the cores' ``max_inputs``: polarity merged, the central 32 x 32
pixels (1..32) sum-pooled in 4 x 4 blocks, the window ``[0, 300 000)`` us in ``T``
equal bins, and the count of each (bin, block) quantized by a step of ``q`` events::

    c[k, 8 * ((y - 1) // 4) + (x - 1) // 4] = #{events (x, y, t, p): 1 <= x, y <= 32,
                                                  floor(t * T / 300 000) = k}
    input[k, j] = min(v_max, floor(c[k, j] / q))    v_max = 127 ("counts": int input),
                                                   v_max = 1   ("spikes": spike input)

The one-pixel border (4.3 % of the events) is dropped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "hash32",
    "rate_encode",
    "direct_encode",
    "delta_encode",
    "Dataset",
    "digits",
    "RecallTask",
    "recall",
    "selective_copy",
    "ENCODINGS",
    "EVENT_ENCODINGS",
    "pool_events",
    "event_digits",
]

ENCODINGS = ("rate", "direct", "delta")
EVENT_ENCODINGS = ("counts", "spikes")
EVENT_GRID = 8
"""The event-digits inputs are an ``EVENT_GRID x EVENT_GRID`` grid of blocks."""
EVENT_BLOCK = 4
"""Sensor pixels per block side (the central ``EVENT_GRID * EVENT_BLOCK`` = 32 pixels)."""
_M32 = np.uint64(0xFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x & _M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _M32
    x ^= x >> np.uint64(16)
    return x


def hash32(*words) -> np.ndarray:
    """The chained lowbias32 hash of the counter words (broadcast as numpy arrays)."""
    h = _mix(np.asarray(words[0], dtype=np.uint64))
    for w in words[1:]:
        h = _mix(h ^ (np.asarray(w, dtype=np.uint64) & _M32))
    return h


def rate_encode(values: np.ndarray, ids: np.ndarray, steps: int, *, p_max: int,
                seed: int = 0) -> torch.Tensor:
    """Rate-code ``values`` (``[B, D]`` ints in ``0..p_max``) into ``[steps, B, D]`` spikes."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be [B, D], not shape {values.shape}")
    if values.size and (values.min() < 0 or values.max() > p_max):
        raise ValueError(f"values must lie in 0..{p_max}, found "
                         f"{values.min()}..{values.max()}")
    b, d = values.shape
    ids = np.asarray(ids)
    if ids.shape != (b,):
        raise ValueError(f"ids must have one entry per sample ({b}), not shape {ids.shape}")
    t = np.arange(steps, dtype=np.uint64)[:, None, None]
    n = np.asarray(ids, dtype=np.uint64)[None, :, None]
    i = np.arange(d, dtype=np.uint64)[None, None, :]
    draw = hash32(seed, n, t, i) >> np.uint64(16)
    spikes = draw * np.uint64(p_max) < values[None].astype(np.uint64) * np.uint64(65536)
    return torch.from_numpy(spikes.astype(np.int64))


def direct_encode(values: np.ndarray, steps: int) -> torch.Tensor:
    """Present the integer ``values`` (``[B, D]``, signed int8 range) at every step."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be [B, D], not shape {values.shape}")
    if values.size and (values.min() < -128 or values.max() > 127):
        raise ValueError(f"direct coding needs signed int8 values, found "
                         f"{values.min()}..{values.max()}")
    x = torch.from_numpy(values.astype(np.int64))
    return x.unsqueeze(0).expand(steps, -1, -1).contiguous()


def delta_encode(values: np.ndarray, steps: int) -> torch.Tensor:
    """Delta-code the static ``values`` (``[B, D]``, signed int8 range) over ``steps``
    steps: the values at step 0, zeros after (module docstring)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    x = direct_encode(values, 1)
    return torch.cat([x, torch.zeros((steps - 1, *x.shape[1:]), dtype=x.dtype)])


@dataclass
class Dataset:
    """An intra-token split: ``x`` ``[n, D]`` ints, ``y`` ``[n]`` labels, ``ids`` global indices."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    p_max: int
    classes: int

    def __len__(self) -> int:
        return len(self.y)

    def encode(self, encoding: str, steps: int, *, seed: int = 0,
               index: np.ndarray | slice = slice(None)) -> torch.Tensor:
        """Encode (a subset of) the samples as ``[steps, B, D]`` network input."""
        if encoding == "rate":
            return rate_encode(self.x[index], self.ids[index], steps, p_max=self.p_max,
                               seed=seed)
        if encoding == "direct":
            return direct_encode(self.x[index], steps)
        if encoding == "delta":
            return delta_encode(self.x[index], steps)
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {ENCODINGS}")


def digits(split: str, *, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 8x8 digits, split deterministically and stratified by class.

    Within each class the samples are ordered by ``hash32(seed, index)``; the
    first ``round(test_fraction * count)`` of each class form the test split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.int64)
    y = data.target.astype(np.int64)
    ids = np.arange(len(y))
    order = hash32(seed, ids.astype(np.uint64))
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = ids[y == c]
        members = members[np.argsort(order[members], kind="stable")]
        test[members[: round(test_fraction * len(members))]] = True
    pick = test if split == "test" else ~test
    return Dataset(x=x[pick], y=y[pick], ids=ids[pick], p_max=16, classes=10)


def pool_events(events: list[np.ndarray], bins: int) -> np.ndarray:
    """The event counts ``c`` ``[B, bins, 64]`` (int64) of N-MNIST-format event arrays
    (fields ``x``, ``y``, ``t``, ``p``; :func:`.dvs.event_digits`): polarity merged,
    the central 32 x 32 pixels in 4 x 4 blocks, ``[0, 300 000)`` us in ``bins`` bins
    (module docstring)."""
    from .dvs import SACCADE_US

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, not {bins!r}")
    window, side, n = 3 * SACCADE_US, EVENT_GRID * EVENT_BLOCK, EVENT_GRID * EVENT_GRID
    flat = []
    for b, e in enumerate(events):
        keep = (e["x"] >= 1) & (e["x"] <= side) & (e["y"] >= 1) & (e["y"] <= side) \
            & (e["t"] >= 0) & (e["t"] < window)
        e = e[keep]
        block = (e["y"] - 1) // EVENT_BLOCK * EVENT_GRID + (e["x"] - 1) // EVENT_BLOCK
        flat.append((b * bins + e["t"] * bins // window) * n + block)
    flat = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    counts = np.bincount(flat, minlength=len(events) * bins * n)
    return counts.astype(np.int64).reshape(len(events), bins, n)


@functools.lru_cache(maxsize=8)
def _event_counts(split: str, bins: int) -> tuple[np.ndarray, np.ndarray]:
    from .dvs import iter_event_digits

    counts, labels = [np.zeros((0, bins, EVENT_GRID ** 2), dtype=np.int64)], \
        [np.zeros(0, dtype=np.int64)]
    for events, part_labels in iter_event_digits(split):
        counts.append(pool_events(events, bins))
        labels.append(part_labels)
    return np.concatenate(counts), np.concatenate(labels)


def event_digits(split: str, bins: int, *, step: int = 1, encoding: str = "counts",
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [bins, N, 64], labels [N])``: the event-digits inputs of a digits split
    (``train`` / ``test``, the digits task's images seen by the emulated DVS with its
    default settings) with ``step`` events per input level, as ``counts`` (int input,
    0..127) or ``spikes`` (0/1) (module docstring).  Cached per ``(split, bins)``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if encoding not in EVENT_ENCODINGS:
        raise ValueError(f"unknown event encoding {encoding!r}; choose one of {EVENT_ENCODINGS}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer number of events, not {step!r}")
    counts, labels = _event_counts(split, bins)
    x = np.minimum(counts // step, 127 if encoding == "counts" else 1)
    return torch.from_numpy(x.transpose(1, 0, 2).copy()), torch.from_numpy(labels)


@dataclass
class RecallTask:
    """Token sequences ``x`` ``[length, B, D]`` (spikes) and targets ``y`` ``[B]``."""

    x: torch.Tensor
    y: torch.Tensor
    n_keys: int
    n_values: int
    n_pairs: int

    @property
    def chance(self) -> float:
        """Guessing a value uniformly: ``1 / n_values``."""
        return 1.0 / self.n_values

    def chance_in_context(self) -> float:
        """Guessing uniformly among the distinct values present in each sequence."""
        values = self.x[:, :, self.n_keys:self.n_keys + self.n_values].amax(dim=0)
        return float((1.0 / values.sum(dim=1).clamp(min=1)).mean())


def recall(count: int, *, length: int = 32, n_pairs: int = 8, n_keys: int = 16,
           n_values: int = 16, seed: int = 0) -> RecallTask:
    """Associative recall with ``n_pairs`` writes in a sequence of ``length`` tokens.

    A token is a spike vector of ``n_keys + n_values + 1`` channels: a *write*
    token carries a key one-hot and a value one-hot, a *blank* token is all
    zeros, the last token is the *query*: a key one-hot and the query flag (the
    last channel).  Keys within a sequence are distinct (drawn without
    replacement), values are drawn with replacement, the writes sit at random
    positions among the first ``length - 1`` tokens, and the query asks for one
    of the written keys.  The target is that key's value.  Sequences are drawn
    with ``numpy.random.default_rng(seed)``; train and test use different seeds.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be at least 1, not {n_pairs}")
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs={n_pairs} needs at least that many keys, not {n_keys}")
    if length < n_pairs + 1:
        raise ValueError(f"length={length} cannot hold {n_pairs} writes and a query")
    rng = np.random.default_rng(seed)
    d = n_keys + n_values + 1
    x = np.zeros((length, count, d), dtype=np.int64)
    y = np.zeros(count, dtype=np.int64)
    for b in range(count):
        keys = rng.choice(n_keys, size=n_pairs, replace=False)
        values = rng.integers(0, n_values, size=n_pairs)
        slots = np.sort(rng.choice(length - 1, size=n_pairs, replace=False))
        x[slots, b, keys] = 1
        x[slots, b, n_keys + values] = 1
        pick = rng.integers(0, n_pairs)
        x[length - 1, b, keys[pick]] = 1
        x[length - 1, b, d - 1] = 1
        y[b] = values[pick]
    return RecallTask(torch.from_numpy(x), torch.from_numpy(y), n_keys, n_values, n_pairs)


def selective_copy(count: int, *, length: int = 32, n_data: int = 4, vocab: int = 8,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective copy: ``n_data`` data tokens at random positions among blanks, then
    ``n_data`` go tokens; the targets ``[B, n_data]`` are the data tokens in order.

    A token has ``vocab + 1`` channels: a data token is a one-hot of its symbol,
    a go token sets the last channel.  Returns ``(x [length + n_data, B, vocab + 1], y)``.
    """
    if length < n_data:
        raise ValueError(f"length={length} cannot hold {n_data} data tokens")
    rng = np.random.default_rng(seed)
    x = np.zeros((length + n_data, count, vocab + 1), dtype=np.int64)
    y = rng.integers(0, vocab, size=(count, n_data))
    for b in range(count):
        slots = np.sort(rng.choice(length, size=n_data, replace=False))
        x[slots, b, y[b]] = 1
    x[length:, :, vocab] = 1
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
