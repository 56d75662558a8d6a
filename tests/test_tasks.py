"""Tasks, splits and encoders (``golden/tasks.py``).

Known answers come from independent computations written here: a pure-Python
(int, modulo 2**32) lowbias32 chain written from the ``hash32`` docstring, the
rate-coding rule written out per spike, the split rule re-derived from the
``digits`` docstring, and the recall / selective-copy sequences decoded token
by token.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from spikeforge.golden import tasks
from spikeforge.golden.tasks import direct_encode, hash32, rate_encode

M32 = 0xFFFFFFFF


# ------------------------------------------------------------------- hash32
def py_mix(x: int) -> int:
    """lowbias32, exactly as the docstring writes it, on Python ints modulo 2**32."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def py_hash32(*words: int) -> int:
    """``mix(... mix(mix(w0) ^ w1) ... ^ wn)`` with every word taken modulo 2**32."""
    h = py_mix(words[0] & M32)
    for w in words[1:]:
        h = py_mix(h ^ (w & M32))
    return h


def test_py_mix_is_a_bijection_sample():
    # Sanity of the reference itself: lowbias32 is a permutation of 32-bit words
    # (both multipliers are odd, xorshifts are invertible), 0 is its fixed point.
    assert py_mix(0) == 0
    outs = {py_mix(i) for i in range(1, 5000)}
    assert len(outs) == 4999 and 0 not in outs
    assert all(0 <= v <= M32 for v in outs)


@pytest.mark.parametrize("words", [
    (0,),
    (1,),
    (0xFFFFFFFF,),
    (12345,),
    (0, 0),
    (7, 1),
    (1, 7),
    (0, 5, 3, 2),
    (42, 1796, 1023, 63),
    (0xDEADBEEF, 0xCAFEBABE, 0x12345678, 0x9ABCDEF0, 0x0F0F0F0F),
])
def test_hash32_matches_pure_python_lowbias32_chain(words):
    got = hash32(*words)
    assert np.asarray(got).dtype == np.uint64
    assert int(got) == py_hash32(*words)
    assert 0 <= int(got) <= M32


def test_hash32_word_order_matters():
    assert int(hash32(1, 2)) != int(hash32(2, 1))
    assert int(hash32(3, 0)) != int(hash32(0, 3))
    assert int(hash32(5, 1)) != int(hash32(5))


def test_hash32_words_are_taken_modulo_2_32():
    assert int(hash32(5 + (1 << 32), 9)) == int(hash32(5, 9)) == py_hash32(5, 9)
    assert int(hash32(5, 9 + (3 << 32))) == py_hash32(5, 9)


def test_hash32_broadcasts_like_numpy():
    seed = 3
    n = np.arange(5, dtype=np.uint64)[:, None, None]
    t = np.arange(4, dtype=np.uint64)[None, :, None]
    i = np.array([0, 1, 63], dtype=np.uint64)[None, None, :]
    got = hash32(seed, n, t, i)
    assert got.shape == (5, 4, 3)
    for a in range(5):
        for b in range(4):
            for c, ch in enumerate((0, 1, 63)):
                assert int(got[a, b, c]) == py_hash32(seed, a, b, ch), (a, b, ch)


def test_hash32_array_first_word_and_python_int_arrays():
    words = [0, 1, 2, 1000, M32]
    got = hash32(np.array(words, dtype=np.uint64), 77)
    assert got.shape == (5,)
    assert [int(v) for v in got] == [py_hash32(w, 77) for w in words]
    # plain Python lists broadcast too
    got2 = hash32(9, [1, 2, 3])
    assert [int(v) for v in got2] == [py_hash32(9, w) for w in (1, 2, 3)]


def test_hash32_does_not_modify_its_inputs():
    a = np.array([1, 2, 3], dtype=np.uint64)
    b = np.array([4, 5, 6], dtype=np.uint64)
    hash32(a, b)
    assert a.tolist() == [1, 2, 3] and b.tolist() == [4, 5, 6]


# -------------------------------------------------------------- rate coding
def py_rate_spike(seed: int, n: int, t: int, i: int, p: int, p_max: int) -> int:
    """The docstring rule: spike iff ``(hash32(seed, n, t, i) >> 16) * p_max < p * 65536``."""
    return int((py_hash32(seed, n, t, i) >> 16) * p_max < p * 65536)


def test_rate_encode_matches_the_documented_rule_spike_by_spike():
    rng = np.random.default_rng(11)
    values = rng.integers(0, 17, size=(3, 7))
    ids = np.array([5, 900, 1796])
    x = rate_encode(values, ids, 4, p_max=16, seed=3)
    assert x.shape == (4, 3, 7) and x.dtype == torch.int64
    for t in range(4):
        for b in range(3):
            for i in range(7):
                want = py_rate_spike(3, int(ids[b]), t, i, int(values[b, i]), 16)
                assert int(x[t, b, i]) == want, (t, b, i)


def test_rate_encode_is_deterministic():
    values = np.full((4, 10), 8)
    ids = np.arange(4)
    a = rate_encode(values, ids, 6, p_max=16, seed=1)
    b = rate_encode(values.copy(), ids.copy(), 6, p_max=16, seed=1)
    assert torch.equal(a, b)


def test_rate_encode_depends_on_seed_id_step_and_channel():
    values = np.full((2, 64), 8)  # p = p_max / 2: every pattern is a coin flip per spike
    ids = np.array([10, 11])
    x = rate_encode(values, ids, 3, p_max=16, seed=0)
    # seed
    assert not torch.equal(x, rate_encode(values, ids, 3, p_max=16, seed=1))
    # sample id: same values, different ids -> different rows
    assert not torch.equal(x[:, 0], x[:, 1])
    assert not torch.equal(x, rate_encode(values, ids + 100, 3, p_max=16, seed=0))
    # the spikes of a sample follow its id, not its position in the batch
    swapped = rate_encode(values, ids[::-1].copy(), 3, p_max=16, seed=0)
    assert torch.equal(swapped[:, 0], x[:, 1]) and torch.equal(swapped[:, 1], x[:, 0])
    # step
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])
    # a longer run extends a shorter one (step t does not depend on the total)
    assert torch.equal(rate_encode(values, ids, 5, p_max=16, seed=0)[:3], x)
    # channel: the same value on every channel still gives different spikes per channel
    row = x[0, 0]
    assert 0 < int(row.sum()) < 64


def test_rate_encode_empirical_rate_is_p_over_p_max():
    p_max = 16
    d = p_max + 1
    values = np.tile(np.arange(d), (200, 1))  # channel i carries p = i
    x = rate_encode(values, np.arange(200), 50, p_max=p_max, seed=5)
    rate = x.double().mean(dim=(0, 1))  # 10,000 draws per channel
    expected = torch.arange(d, dtype=torch.float64) / p_max
    # binomial sd <= 0.005; allow 4 sd
    assert torch.allclose(rate, expected, atol=0.02), (rate, expected)


@pytest.mark.parametrize("p_max", [1, 3, 16, 255])
def test_rate_encode_exact_endpoints(p_max):
    ids = np.arange(50)
    zeros = rate_encode(np.zeros((50, 8), dtype=np.int64), ids, 20, p_max=p_max, seed=2)
    ones = rate_encode(np.full((50, 8), p_max), ids, 20, p_max=p_max, seed=2)
    assert int(zeros.sum()) == 0
    assert bool((ones == 1).all())


def test_rate_encode_rejects_out_of_range_values():
    ids = np.arange(2)
    with pytest.raises(ValueError, match=re.escape("values must lie in 0..16, found 0..17")):
        rate_encode(np.array([[0, 17], [3, 4]]), ids, 2, p_max=16)
    with pytest.raises(ValueError, match=re.escape("values must lie in 0..16, found -1..4")):
        rate_encode(np.array([[0, -1], [3, 4]]), ids, 2, p_max=16)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_rate_encode_rejects_wrong_ndim(shape):
    with pytest.raises(ValueError, match=re.escape(f"values must be [B, D], not shape {shape}")):
        rate_encode(np.zeros(shape, dtype=np.int64), np.arange(2), 2, p_max=16)


# ------------------------------------------------------------ direct coding
def test_direct_encode_repeats_values_every_step():
    values = np.array([[-128, 0, 127], [5, -7, 1]])
    x = direct_encode(values, 4)
    assert x.shape == (4, 2, 3) and x.dtype == torch.int64
    for t in range(4):
        assert x[t].tolist() == values.tolist()
    # the steps are independent storage (not a view of one row)
    x[0, 0, 0] = 99
    assert int(x[1, 0, 0]) == -128


@pytest.mark.parametrize("bad, shown", [(128, "-3..128"), (-129, "-129..4")])
def test_direct_encode_rejects_values_outside_int8(bad, shown):
    values = np.array([[-3, 4], [bad, 0]])
    with pytest.raises(ValueError, match=re.escape(f"signed int8 values, found {shown}")):
        direct_encode(values, 2)


def test_dataset_encode_dispatch_and_unknown_encoding():
    data = tasks.digits("test")
    idx = np.array([0, 3, 7])
    rate = data.encode("rate", 3, seed=4, index=idx)
    assert torch.equal(rate, rate_encode(data.x[idx], data.ids[idx], 3, p_max=16, seed=4))
    direct = data.encode("direct", 2, index=idx)
    assert torch.equal(direct, direct_encode(data.x[idx], 2))
    with pytest.raises(ValueError, match="unknown encoding 'spiky'"):
        data.encode("spiky", 2)


# ------------------------------------------------------------------- digits
def py_split(seed: int, test_fraction: float = 0.2):
    """The split re-derived from the docstring: per class, order by (hash32(seed, index), index),
    the first round(fraction * count) are test."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    test = set()
    for c in range(10):
        members = [i for i in range(len(y)) if y[i] == c]
        members.sort(key=lambda i: (py_hash32(seed, i), i))
        test.update(members[: round(test_fraction * len(members))])
    return y, test


@pytest.fixture(scope="module")
def split0():
    return tasks.digits("train"), tasks.digits("test")


def test_digits_split_is_disjoint_and_covers_everything(split0):
    train, test = split0
    assert len(train) + len(test) == 1797
    tr, te = set(train.ids.tolist()), set(test.ids.tolist())
    assert not tr & te
    assert tr | te == set(range(1797))
    assert len(tr) == len(train) and len(te) == len(test)  # no duplicates


def test_digits_split_matches_the_documented_rule(split0):
    train, test = split0
    y, want_test = py_split(0)
    assert set(test.ids.tolist()) == want_test
    # the rows carry the right labels and pixels
    from sklearn.datasets import load_digits

    data = load_digits()
    for split in (train, test):
        assert split.y.tolist() == [int(y[i]) for i in split.ids]
        assert np.array_equal(split.x, data.data[split.ids].astype(np.int64))
        assert split.x.min() >= 0 and split.x.max() <= split.p_max == 16
        assert split.classes == 10


def test_digits_split_is_stratified(split0):
    train, test = split0
    for c in range(10):
        n_test = int((test.y == c).sum())
        n_all = n_test + int((train.y == c).sum())
        assert n_all > 150
        assert abs(n_test / n_all - 0.2) <= 0.5 / n_all + 1e-12, (c, n_test, n_all)


def test_digits_split_is_deterministic_and_seeded(split0):
    train, test = split0
    again = tasks.digits("test")
    assert np.array_equal(again.ids, test.ids) and np.array_equal(again.x, test.x)
    other = tasks.digits("test", seed=1)
    assert not np.array_equal(other.ids, test.ids)
    _, want = py_split(1)
    assert set(other.ids.tolist()) == want


def test_digits_test_fraction_and_bad_split():
    small = tasks.digits("test", test_fraction=0.1)
    assert 170 <= len(small) <= 190
    with pytest.raises(ValueError, match="split must be 'train' or 'test', not 'val'"):
        tasks.digits("val")


# ------------------------------------------------------------------- recall
def decode_recall(x: torch.Tensor, n_keys: int, n_values: int):
    """Per sequence: the list of (position, key, value) writes and the queried key."""
    length, count, d = x.shape
    assert d == n_keys + n_values + 1
    out = []
    for b in range(count):
        writes = []
        for pos in range(length - 1):
            tok = x[pos, b]
            if int(tok.sum()) == 0:
                continue  # blank
            keys = torch.nonzero(tok[:n_keys]).flatten().tolist()
            vals = torch.nonzero(tok[n_keys:n_keys + n_values]).flatten().tolist()
            assert len(keys) == 1 and len(vals) == 1, (b, pos, tok)
            assert int(tok[-1]) == 0
            writes.append((pos, keys[0], vals[0]))
        q = x[length - 1, b]
        qkeys = torch.nonzero(q[:n_keys]).flatten().tolist()
        assert len(qkeys) == 1 and int(q[-1]) == 1
        assert int(q[n_keys:n_keys + n_values].sum()) == 0
        out.append((writes, qkeys[0]))
    return out


@pytest.mark.parametrize("kw", [
    dict(),
    dict(length=10, n_pairs=3, n_keys=4, n_values=5),
    dict(length=5, n_pairs=4, n_keys=4, n_values=2),  # every slot before the query is a write
    dict(length=20, n_pairs=1, n_keys=1, n_values=3),
])
def test_recall_sequences_decode_to_their_targets(kw):
    count = 64
    task = tasks.recall(count, seed=3, **kw)
    length = kw.get("length", 32)
    n_pairs, n_keys, n_values = (kw.get("n_pairs", 8), kw.get("n_keys", 16),
                                 kw.get("n_values", 16))
    assert task.x.shape == (length, count, n_keys + n_values + 1)
    assert task.y.shape == (count,)
    assert task.x.dtype == torch.int64 and task.y.dtype == torch.int64
    assert set(task.x.unique().tolist()) <= {0, 1}
    assert (task.n_keys, task.n_values, task.n_pairs) == (n_keys, n_values, n_pairs)
    for b, (writes, qkey) in enumerate(decode_recall(task.x, n_keys, n_values)):
        assert len(writes) == n_pairs
        keys = [k for _, k, _ in writes]
        assert len(set(keys)) == n_pairs
        assert qkey in keys
        written = {k: v for _, k, v in writes}
        assert int(task.y[b]) == written[qkey]
        assert 0 <= int(task.y[b]) < n_values


def test_recall_is_seeded_and_varied():
    a, b = tasks.recall(50, seed=1), tasks.recall(50, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = tasks.recall(50, seed=2)
    assert not torch.equal(a.x, c.x)
    # write positions, keys and targets vary across sequences
    decoded = decode_recall(a.x, 16, 16)
    assert len({tuple(p for p, _, _ in w) for w, _ in decoded}) > 1
    assert len(set(a.y.tolist())) > 1


@pytest.mark.parametrize("kw, message", [
    (dict(n_pairs=5, n_keys=4), "n_pairs=5 needs at least that many keys, not 4"),
    (dict(length=8, n_pairs=8), "length=8 cannot hold 8 writes and a query"),
    (dict(length=3, n_pairs=4, n_keys=4), "length=3 cannot hold 4 writes and a query"),
])
def test_recall_rejects_impossible_configs(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tasks.recall(4, **kw)


def test_recall_chance_and_chance_in_context():
    task = tasks.recall(300, length=12, n_pairs=4, n_keys=6, n_values=5, seed=9)
    assert task.chance == pytest.approx(1 / 5)
    decoded = decode_recall(task.x, 6, 5)
    want = sum(1 / len({v for _, _, v in w}) for w, _ in decoded) / len(decoded)
    # (computed in float32 by the task: compare to float32 precision)
    assert task.chance_in_context() == pytest.approx(want, rel=1e-6)
    # with repeats drawn with replacement, the in-context chance lies between the bounds
    assert 1 / 4 <= task.chance_in_context() <= 1.0
    assert task.chance_in_context() > task.chance
    single = tasks.recall(20, length=4, n_pairs=1, n_keys=3, n_values=7, seed=0)
    assert single.chance_in_context() == pytest.approx(1.0)
    assert single.chance == pytest.approx(1 / 7)


# ---------------------------------------------------------- selective copy
@pytest.mark.parametrize("kw", [dict(), dict(length=6, n_data=6, vocab=3),
                                dict(length=10, n_data=1, vocab=2)])
def test_selective_copy_shapes_and_targets(kw):
    count = 40
    x, y = tasks.selective_copy(count, seed=4, **kw)
    length, n_data, vocab = kw.get("length", 32), kw.get("n_data", 4), kw.get("vocab", 8)
    assert x.shape == (length + n_data, count, vocab + 1)
    assert y.shape == (count, n_data)
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < vocab
    for b in range(count):
        symbols = []
        for pos in range(length):
            tok = x[pos, b]
            assert int(tok[vocab]) == 0
            if int(tok.sum()):
                hot = torch.nonzero(tok[:vocab]).flatten().tolist()
                assert len(hot) == 1 and int(tok.sum()) == 1
                symbols.append(hot[0])
        assert symbols == y[b].tolist()
        go = x[length:, b]
        assert go[:, vocab].tolist() == [1] * n_data
        assert int(go[:, :vocab].sum()) == 0


def test_selective_copy_seeded_and_rejects_short_length():
    a = tasks.selective_copy(10, seed=1)
    b = tasks.selective_copy(10, seed=1)
    c = tasks.selective_copy(10, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    with pytest.raises(ValueError, match=re.escape("length=3 cannot hold 4 data tokens")):
        tasks.selective_copy(2, length=3, n_data=4)
