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
values themselves (signed int8) at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "hash32",
    "rate_encode",
    "direct_encode",
    "Dataset",
    "digits",
    "RecallTask",
    "recall",
    "selective_copy",
    "ENCODINGS",
]

ENCODINGS = ("rate", "direct")
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
