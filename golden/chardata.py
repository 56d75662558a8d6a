"""Character-level text for the language model (:mod:`.charlm`) and its n-gram baselines.

Text: the documentation topics every Python install ships, ``pydoc_data.topics``
(a dict of 79 topics, about 465 k characters).  The topics are taken in sorted key
order and joined with ``"\\n"``; the last 10 % of the keys (8 topics, ``typesmethods``
to ``yield``, about 38 k characters) are the held-out split, the others training.

Alphabet: the 64 symbols of :data:`ALPHABET` (index = position), so that one token
is one of 64 input spikes (the simulated board's ``max_inputs``).  Every other
character is folded into one of them before encoding (:func:`fold`):

* upper-case ASCII letters -> lower case (so the model writes lower case);
* ``? & @ $ ^ ` `` -> ``! + # # ~ '`` (the ASCII the alphabet lacks);
* ``’ ‘`` -> ``'``, ``“ ”`` -> ``"``, ``…`` -> ``.``, ``— –`` -> ``-``, ``ß`` -> ``s``,
  ``°`` -> ``o`` (the non-ASCII characters of the topics, :data:`FOLD`);
* anything else (a tab, other Unicode) -> space (``fold(strict=False)``, for the
  corpus; a prompt is folded with ``strict=True``, which refuses such characters).

Bits per character are therefore on the folded 64-symbol alphabet: lower than on
the raw text, which also has to code the letter case.

N-gram baselines (:func:`ngram_bpc`): an add-``k`` model of order ``N`` (counts of the
``N - 1`` previous symbols, each of the ``V = 64`` symbols ``k`` pseudo-counts)::

    P(c | h) = (count(h c) + k) / (count(h) + k V)

and the interpolated (Jelinek-Mercer) trigram ``l3 P3 + l2 P2 + l1 P1 + l0 / V`` with
maximum-likelihood ``P3``, ``P2``, ``P1`` (0 for an unseen history).  ``k`` and the
``l`` weights are chosen on the last 10 % of the training text (the rest is counted),
then the model is counted on all the training text and scored on the held-out
split.  The first ``N - 1`` symbols of a text have a shorter history: they are
scored with the history they have (the text starts from nothing, like the network
from its reset state).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

__all__ = ["ALPHABET", "FOLD", "fold", "encode", "decode", "corpus", "split", "ngram_bpc",
           "ngram_baselines", "HELDOUT_SHARE"]

ALPHABET = "\n !\"#%'()*+,-./0123456789:;<=>[\\]_abcdefghijklmnopqrstuvwxyz{|}~"
"""The 64 symbols; a symbol's index is its token id."""

FOLD = {**{c: c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
        "?": "!", "&": "+", "@": "#", "$": "#", "^": "~", "`": "'",
        "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2026": ".",
        "\u2014": "-", "\u2013": "-", "\u00df": "s", "\u00b0": "o"}
"""Characters outside the alphabet and the symbol each becomes."""

HELDOUT_SHARE = 0.1
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
assert len(ALPHABET) == 64 == len(_INDEX)


def fold(text: str, *, strict: bool = True) -> str:
    """``text`` in the alphabet (module docstring).  ``strict``: a character that is
    neither a symbol nor in :data:`FOLD` raises ValueError naming it and where it is;
    otherwise it becomes a space."""
    out = []
    for i, c in enumerate(text):
        if c in _INDEX:
            out.append(c)
        elif c in FOLD:
            out.append(FOLD[c])
        elif strict:
            raise ValueError(f"character {c!r} (U+{ord(c):04X}) at position {i} is not in "
                             f"the model's alphabet and has no folding")
        else:
            out.append(" ")
    return "".join(out)


def encode(text: str, *, strict: bool = True) -> torch.Tensor:
    """Token ids (int64) of ``text`` after :func:`fold`."""
    return torch.tensor([_INDEX[c] for c in fold(text, strict=strict)], dtype=torch.int64)


def decode(ids) -> str:
    return "".join(ALPHABET[int(i)] for i in ids)


def corpus() -> tuple[list[str], str]:
    """``(keys, text)``: the sorted topic keys and their texts joined with newlines."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    return keys, "\n".join(topics[k] for k in keys)


def split() -> dict:
    """The folded corpus as ``{"train": ids, "heldout": ids, "heldout_keys": [...]}``:
    the last :data:`HELDOUT_SHARE` of the sorted keys are held out."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    cut = len(keys) - max(1, round(len(keys) * HELDOUT_SHARE))
    text = {name: "\n".join(topics[k] for k in part)
            for name, part in (("train", keys[:cut]), ("heldout", keys[cut:]))}
    return {"train": encode(text["train"], strict=False),
            "heldout": encode(text["heldout"], strict=False), "heldout_keys": keys[cut:]}


# ------------------------------------------------------------------ n-grams
def _counts(ids: np.ndarray, order: int, vocab: int) -> list[np.ndarray]:
    """Per history length ``h`` in ``0 .. order - 1``: counts ``[vocab**h, vocab]`` of
    (history, next symbol)."""
    out = []
    for h in range(order):
        table = np.zeros((vocab ** h, vocab), dtype=np.float64)
        if len(ids) > h:
            hist = np.zeros(len(ids) - h, dtype=np.int64)
            for j in range(h):
                hist = hist * vocab + ids[j:len(ids) - h + j]
            np.add.at(table, (hist, ids[h:]), 1.0)
        out.append(table)
    return out


def _histories(ids: np.ndarray, h: int, vocab: int) -> np.ndarray:
    """The index of the ``h`` symbols before each position (-1 where there are fewer)."""
    hist = np.full(len(ids), -1, dtype=np.int64)
    if h == 0:
        return np.zeros(len(ids), dtype=np.int64)
    if len(ids) > h:
        code = np.zeros(len(ids) - h, dtype=np.int64)
        for j in range(h):
            code = code * vocab + ids[j:len(ids) - h + j]
        hist[h:] = code
    return hist


def _components(counts: list[np.ndarray], ids: np.ndarray, vocab: int) -> np.ndarray:
    """``[order + 1, len(ids)]``: per position the probability of its symbol under the
    uniform model and the maximum-likelihood model of each history length (0 for an
    unseen history; uniform where the text has fewer symbols before it)."""
    out = [np.full(len(ids), 1.0 / vocab)]
    for h in range(len(counts)):
        hist = _histories(ids, h, vocab)
        ok = hist >= 0
        rows = counts[h][hist[ok]]
        total = rows.sum(axis=1)
        p = np.full(len(ids), 1.0 / vocab)
        p[ok] = np.where(total > 0, rows[np.arange(len(rows)), ids[ok]] / np.maximum(total, 1),
                         0.0)
        out.append(p)
    return np.stack(out)


def _bpc(p: np.ndarray) -> float:
    return float(-np.log2(p).mean())


def ngram_bpc(train, test, *, order: int, vocab: int = len(ALPHABET), k: float | None = None,
              weights=None) -> float:
    """Bits per character of ``test`` under an n-gram model counted on ``train``
    (token ids): add-``k`` of ``order`` (module docstring), or, with ``weights``
    (``order + 1`` numbers summing to 1: uniform, unigram, bigram, ...), interpolated."""
    if order < 1:
        raise ValueError(f"order must be at least 1, not {order!r}")
    if (k is None) == (weights is None):
        raise ValueError("give either k (add-k) or weights (interpolated), not both")
    if k is not None and not k > 0:
        raise ValueError(f"k must be positive, not {k!r}")
    if weights is not None and (len(weights) != order + 1 or abs(sum(weights) - 1) > 1e-9):
        raise ValueError(f"weights must be {order + 1} numbers summing to 1, not {weights!r}")
    train, test = (np.asarray(t, dtype=np.int64) for t in (train, test))
    counts = _counts(train, order, vocab)
    if weights is not None:
        return _bpc(np.asarray(weights) @ _components(counts, test, vocab))
    return _bpc(_add_k(counts, test, order, vocab, k))


def _add_k(counts, ids, order, vocab, k) -> np.ndarray:
    """Vectorised add-k probabilities (each position at the longest history it has)."""
    p = np.zeros(len(ids))
    for h in range(order):
        hist = _histories(ids, h, vocab)
        use = (hist >= 0) & ((np.arange(len(ids)) >= order - 1) if h == order - 1
                             else (np.arange(len(ids)) == h))
        rows = counts[h][hist[use]]
        p[use] = (rows[np.arange(len(rows)), ids[use]] + k) / (rows.sum(axis=1) + k * vocab)
    return p


K_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
_L_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9,
           0.95)


def ngram_baselines(train, heldout) -> dict:
    """The baselines of the module docstring: ``{name: {"bpc": ..., <its parameters>}}``
    for add-k bigram and trigram and the interpolated trigram."""
    train = np.asarray(train, dtype=np.int64)
    cut = int(len(train) * 0.9)
    fit, tune = train[:cut], train[cut:]
    out = {}
    for name, order in (("bigram add-k", 2), ("trigram add-k", 3)):
        k = min(K_GRID, key=lambda k, o=order: ngram_bpc(fit, tune, order=o, k=k))
        out[name] = {"bpc": ngram_bpc(train, heldout, order=order, k=k), "k": k}
    grid = [(1.0 - a - b - c, a, b, c) for a, b, c in itertools.product(_L_GRID, repeat=3)
            if a + b + c <= 0.99 and 1.0 - a - b - c >= 0.01]
    parts = _components(_counts(fit, 3, len(ALPHABET)), tune, len(ALPHABET))
    best = min(grid, key=lambda w: _bpc(np.asarray(w) @ parts))
    out["trigram interpolated"] = {"bpc": ngram_bpc(train, heldout, order=3,
                                                    weights=best),
                                   "weights": [round(w, 4) for w in best]}
    return out


def uniform_bpc() -> float:
    return math.log2(len(ALPHABET))
