"""Sequence tasks that need a selective (input-dependent) state, with their anchors.

Every generator returns a :class:`SeqTask`: spike tokens ``x`` ``[T, B, D]`` (one
token per step; the token index is real time) and targets ``y`` ``[T, B]`` with
:data:`IGNORE` at every step where nothing is asked.  A model is scored on the
asked steps only (:meth:`SeqTask.accuracy`).  Sequences are drawn with
``numpy.random.default_rng(seed)``: the same arguments give the same tensors.

``selective-copy`` (Mamba, Gu & Dao 2023, section 4.1.1: S6 99.8 %, S4 without
gating 18.3 %): :func:`spikeforge.golden.tasks.selective_copy` with a total length
``T = length``: ``n_data`` data tokens (one-hot of ``vocab`` symbols) at random
positions among blanks in the first ``length - n_data`` steps, then ``n_data``
*go* tokens (channel ``vocab``).  At go token ``j`` the target is data token
``j`` (in order).  ``D = vocab + 1``; chance ``1 / vocab``.

``overwrite`` and ``mqar`` use Zoology's token format: a token is one symbol,
a key (channels ``0 .. n_keys - 1``) or a value (channels ``n_keys ..``), a
blank token is all zeros, a pair is two tokens (the key, then its value) and a
query is the key's token again; the target at a query is the value of its key.
``D = n_keys + n_values``; chance ``1 / n_values``.

``overwrite`` (associative recall where a key is written again and the latest
value wins): ``n_writes`` pairs at random positions (never overlapping) among
the first ``length - 1`` steps, then the query at the last step.  The queried
key ``K`` is written exactly twice, with two different values; the other
``n_writes - 2`` pairs draw their keys uniformly from the other keys (with
replacement, so they may be overwritten too) and their values uniformly.  The
target is ``K``'s second (latest) value.  A memory that cannot forget holds
both of ``K``'s values once each: reading it out gives a tie, so it is right at
most about half the time (:func:`no_forget_accuracy`).

``mqar`` (multi-query associative recall, Zoology, Arora et al. 2023, its
synthetic's layout): ``n_pairs`` pairs with distinct keys (values with
replacement) in the first ``2 n_pairs`` steps, then ``n_queries`` queries at
random later steps, each asking for a different written key.  It needs no
forgetting; it measures the memory's capacity (``n_pairs`` keys in ``n`` state
rows) and how far the recall holds over the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import tasks

__all__ = ["IGNORE", "TASKS", "SeqTask", "selective_copy", "overwrite", "mqar", "make",
           "no_forget_accuracy"]

IGNORE = -1
"""The target of a step where nothing is asked."""

TASKS = ("selective-copy", "overwrite", "mqar")


@dataclass
class SeqTask:
    """Tokens ``x`` ``[T, B, D]`` (0/1), targets ``y`` ``[T, B]`` (:data:`IGNORE` where
    nothing is asked), ``classes`` possible answers, ``params`` the generator's
    arguments."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: int
    params: dict = field(default_factory=dict)

    @property
    def chance(self) -> float:
        """Guessing an answer uniformly: ``1 / classes``."""
        return 1.0 / self.classes

    @property
    def asked(self) -> torch.Tensor:
        """``[T, B]`` bool: the steps with a target."""
        return self.y != IGNORE

    def accuracy(self, pred: torch.Tensor) -> float:
        """The fraction of asked steps where ``pred`` (``[T, B]``) equals the target."""
        if tuple(pred.shape) != tuple(self.y.shape):
            raise ValueError(f"pred has shape {tuple(pred.shape)}, expected "
                             f"{tuple(self.y.shape)}")
        mask = self.asked
        return float((pred[mask] == self.y[mask]).double().mean())


def _positive(name: str, value, least: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")


def selective_copy(count: int, *, length: int = 64, n_data: int = 4, vocab: int = 8,
                   seed: int = 0) -> SeqTask:
    """Selective copying (module docstring), ``length`` steps in all."""
    for name, value in (("count", count), ("n_data", n_data), ("vocab", vocab)):
        _positive(name, value)
    _positive("length", length, 2 * n_data)
    x, y = tasks.selective_copy(count, length=length - n_data, n_data=n_data, vocab=vocab,
                                seed=seed)
    targets = torch.full((length, count), IGNORE, dtype=torch.int64)
    targets[length - n_data:] = y.T
    return SeqTask("selective-copy", x, targets, vocab,
                   dict(length=length, n_data=n_data, vocab=vocab, seed=seed))


def overwrite(count: int, *, length: int = 64, n_writes: int = 6, n_keys: int = 8,
              n_values: int = 8, seed: int = 0) -> SeqTask:
    """Associative recall with an overwritten key: the latest value wins (module docstring)."""
    for name, value in (("count", count), ("n_keys", n_keys)):
        _positive(name, value)
    _positive("n_values", n_values, 2)
    _positive("n_writes", n_writes, 2)
    _positive("length", length, 2 * n_writes + 1)
    if n_writes > 2 and n_keys < 2:
        raise ValueError(f"n_keys={n_keys}: writes of other keys need at least 2 keys")
    rng = np.random.default_rng(seed)
    x = np.zeros((length, count, n_keys + n_values), dtype=np.int64)
    y = np.full((length, count), IGNORE, dtype=np.int64)
    for b in range(count):
        key = int(rng.integers(n_keys))
        others = (key + 1 + rng.integers(0, max(1, n_keys - 1), size=n_writes - 2)) % n_keys
        first = int(rng.integers(n_values))
        last = (first + 1 + int(rng.integers(n_values - 1))) % n_values
        # The queried key's two writes take two random pairs, in order.
        order = rng.permutation(n_writes)
        keys = np.empty(n_writes, dtype=np.int64)
        values = rng.integers(0, n_values, size=n_writes)
        mine = np.sort(order[:2])
        keys[order[2:]] = others
        keys[mine] = key
        values[mine] = (first, last)
        # Pair i starts at s_i + i (s sorted, distinct): pairs never overlap.
        starts = np.sort(rng.choice(length - 1 - n_writes, size=n_writes, replace=False)) \
            + np.arange(n_writes)
        x[starts, b, keys] = 1
        x[starts + 1, b, n_keys + values] = 1
        x[length - 1, b, key] = 1
        y[length - 1, b] = last
    return SeqTask("overwrite", torch.from_numpy(x), torch.from_numpy(y), n_values,
                   dict(length=length, n_writes=n_writes, n_keys=n_keys, n_values=n_values,
                        seed=seed))


def mqar(count: int, *, length: int = 64, n_pairs: int = 8, n_queries: int = 4,
         n_keys: int = 16, n_values: int = 16, seed: int = 0) -> SeqTask:
    """Multi-query associative recall (module docstring)."""
    for name, value in (("count", count), ("n_pairs", n_pairs), ("n_queries", n_queries),
                        ("n_values", n_values)):
        _positive(name, value)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs={n_pairs} distinct keys need n_keys >= {n_pairs}, "
                         f"not {n_keys}")
    if n_queries > n_pairs:
        raise ValueError(f"n_queries={n_queries} distinct queries need n_pairs >= "
                         f"{n_queries}, not {n_pairs}")
    _positive("length", length, 2 * n_pairs + n_queries)
    rng = np.random.default_rng(seed)
    x = np.zeros((length, count, n_keys + n_values), dtype=np.int64)
    y = np.full((length, count), IGNORE, dtype=np.int64)
    pairs = np.arange(n_pairs)
    for b in range(count):
        keys = rng.choice(n_keys, size=n_pairs, replace=False)
        values = rng.integers(0, n_values, size=n_pairs)
        x[2 * pairs, b, keys] = 1
        x[2 * pairs + 1, b, n_keys + values] = 1
        asked = rng.choice(n_pairs, size=n_queries, replace=False)
        steps = 2 * n_pairs + np.sort(rng.choice(length - 2 * n_pairs, size=n_queries,
                                                 replace=False))
        x[steps, b, keys[asked]] = 1
        y[steps, b] = values[asked]
    return SeqTask("mqar", torch.from_numpy(x), torch.from_numpy(y), n_values,
                   dict(length=length, n_pairs=n_pairs, n_queries=n_queries, n_keys=n_keys,
                        n_values=n_values, seed=seed))


_MAKERS = {"selective-copy": selective_copy, "overwrite": overwrite, "mqar": mqar}


def make(name: str, count: int, **params) -> SeqTask:
    """The task ``name`` (one of :data:`TASKS`) with ``params``."""
    if name not in _MAKERS:
        raise ValueError(f"unknown task {name!r}; choose one of {TASKS}")
    return _MAKERS[name](count, **params)


def no_forget_accuracy(task: SeqTask) -> float:
    """``overwrite`` / ``mqar``: the accuracy of an ideal memory that never forgets
    (one row per key, every pair added): at a query, the value written most often
    with the queried key, ties to the lowest value.  This is what fixed decay with
    0/1 operands can at best do (a decay below 1.0 erases a written 1 in one step,
    docs/integer-model.md 5.6)."""
    if task.name not in ("overwrite", "mqar"):
        raise ValueError(f"no_forget_accuracy needs an 'overwrite' or 'mqar' task, not "
                         f"{task.name!r}")
    n_keys = task.params["n_keys"]
    keys = task.x[:, :, :n_keys].double()
    values = task.x[:, :, n_keys:].double()
    before = torch.cat([torch.zeros_like(keys[:1]), keys[:-1]])  # the previous token's key
    # counts[t, b, key, value]: pairs (key, value) written up to and including step t.
    counts = torch.cumsum(before[..., :, None] * values[..., None, :], dim=0)
    scores = (keys[..., :, None] * counts).sum(dim=2)
    return task.accuracy(scores.argmax(dim=2))
