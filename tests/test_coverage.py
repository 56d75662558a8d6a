"""The coverage bins of the integer model (``golden/coverage.py``) and the steering
of the random generator into them (``netgen.steer``): directed cases hit exactly
the bins they should, and steering fills bins a plain draw leaves empty."""

from __future__ import annotations

import random

import pytest
import torch
from netgen import parse_cases, random_input, random_network, steer
from spikeforge.golden.coverage import BINS, Coverage
from spikeforge.golden.integer import Format, LIFLayer, Network, Projection

I64 = torch.int64
FMT = Format(w_bits=4, u_bits=6, frac_bits=2, in_bits=8, acc_bits=12)  # u in [-32, 31]


def _neuron(bias: int, theta: int, reset: str = "subtract", alpha: int = 4,
            spiking: bool = True) -> Network:
    """One neuron fed input 0 through a unit weight."""
    layer = LIFLayer("n", 1, torch.tensor([alpha]), torch.tensor([theta]), torch.tensor([bias]),
                     [Projection("input", torch.tensor([[1]]))],
                     reset=reset if spiking else "none", spiking=spiking)
    return Network(input_size=1, input_kind="int", layers=[layer], output="n", fmt=FMT)


def _hits(net: Network, inputs: list[int]) -> set[str]:
    return Coverage().hits(net, torch.tensor(inputs, dtype=I64)[:, None, None])


def test_saturated_high_spike_with_subtract_reset():
    # v_wide = 0 + 40 + 0 > 31: saturated high, spikes (theta 5), subtract reset.
    hits = _hits(_neuron(bias=0, theta=5), [40])
    assert "lif.subtract.high.spike" in hits
    assert not hits & {"lif.subtract.in.spike", "lif.subtract.low.quiet", "li.high",
                       "lif.zero.high.spike"}


def test_saturated_low_and_far_below():
    hits = _hits(_neuron(bias=-32, theta=5, reset="zero"), [-100])  # v_wide = -132
    assert {"lif.zero.low.quiet", "lif.far_low", "lif.bias=u_min", "edge.input.negative"} \
        <= hits
    assert "lif.far_high" not in hits


def test_threshold_boundaries():
    assert "lif.v=theta" in _hits(_neuron(bias=0, theta=5), [5])
    hits = _hits(_neuron(bias=0, theta=5), [4])
    assert "lif.v=theta-1" in hits and "lif.v=theta" not in hits
    assert "lif.theta=u_max.spike" in _hits(_neuron(bias=0, theta=31), [50])


def test_leak_bins_need_a_nonzero_membrane():
    # Step 0 has u_prev = 0: no leak bin; step 1 has u_prev = -3 (no spike at theta 31).
    assert "lif.alpha=1" not in _hits(_neuron(bias=0, theta=31, alpha=1), [-3])
    hits = _hits(_neuron(bias=0, theta=31, alpha=1), [-3, 0])
    assert {"lif.alpha=1", "lif.leak.floor"} <= hits  # 1 * -3 >> 2 floors to -1


def test_li_layer_bins():
    hits = _hits(_neuron(bias=31, theta=1, spiking=False), [1, -100])
    assert {"li.high", "li.low", "lif.bias=u_max"} <= hits
    assert not any(name.startswith(("lif.subtract", "lif.zero", "lif.none")) for name in hits)


def test_every_bin_has_a_description_and_the_table_marks_empty_bins():
    cov = Coverage(ssm=True, limits={"n": 4, "m": 4}, features=True)
    assert list(cov.counts) == list(BINS)
    cov.observe(_neuron(bias=0, theta=5), torch.tensor([[[40]]], dtype=I64))
    table = cov.table()
    assert "| lif.subtract.high.spike | 1 |" in table
    assert "| ssm.n=max | **0** |" in table
    assert "ssm.n=max" in cov.missing and "lif.subtract.high.spike" not in cov.missing


def test_bins_that_cannot_apply_are_left_out():
    names = Coverage(input_kinds=("spike",), frac_bits=0).counts
    assert "edge.input.negative" not in names and "lif.leak.floor" not in names
    assert not any(name.startswith("ssm.") for name in Coverage().counts)
    assert "ssm.n=1" not in Coverage(ssm=True).counts  # no limits, no n / m bins
    assert not any(name.startswith(("conv.", "cuba.")) for name in Coverage().counts)


def _draw(seed: int, attempt: int):
    rng = random.Random(f"steer:{seed}.{attempt}")
    net = random_network(rng, max_ssm=0, max_lif=2, max_size=4, hot_prob=0.0)
    return net, random_input(rng, net, 3, 1)[:, 0, :]


def test_steering_fills_bins_a_plain_draw_leaves_empty():
    plain = Coverage()
    for seed in range(12):
        net, x = _draw(seed, 0)
        plain.observe(net, x[:, None, :])
    steered = Coverage()
    cases = steer(_draw, range(12), steered, attempts=8)
    assert len(steered.missing) < len(plain.missing)
    assert any(attempt != 0 for _, attempt, _ in cases)
    # A case named by its seed and draw is that draw, unsteered.
    again = steer(_draw, [(cases[3][0], cases[3][1])], Coverage())
    assert again[0][1] == cases[3][1] and torch.equal(again[0][2][1], cases[3][2][1])


@pytest.mark.parametrize(("text", "cases"), [
    ("0-3", [0, 1, 2]), ("17", [17]), ("17.3", [(17, 3)]), ("1, 5.2,7-9", [1, (5, 2), 7, 8]),
])
def test_parse_cases(text, cases):
    assert parse_cases(text) == cases
