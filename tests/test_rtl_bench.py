"""The RTL benchmarks run and report consistent numbers (targets live in the
benchmark output, not here)."""

from __future__ import annotations

import pytest
from spikeforge.gateware import bench
from spikeforge.gateware.rtl import BENCH_CONFIGS
from spikeforge.gateware.verilator import have_verilator

pytestmark = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")


def test_dense_load_counts_are_consistent():
    result = bench.dense("p8", steps=2)
    lanes = BENCH_CONFIGS["p8"].lanes
    # A clock does at most one synaptic operation per lane.
    assert 0 < result["synops_per_cycle"] <= lanes
    assert result["fraction_of_peak"] == result["synops_per_cycle"] / lanes


def test_digits_clocks_grow_with_input_events():
    result = bench.digits(densities=(0.0, 0.5), steps=2)
    quiet, busy = result["points"]
    assert quiet["input_events_per_step"] == 0 < busy["input_events_per_step"]
    assert busy["clocks_per_step"] > quiet["clocks_per_step"]
    # No input, no hidden spikes: only the fixed per-row work remains.
    assert quiet["hidden_spikes_per_step"] == 0
    assert quiet["overhead_clocks_per_step"] > 0
