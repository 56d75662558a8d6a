"""The RTL benchmarks run and report consistent numbers (targets live in the
benchmark output, not here)."""

from __future__ import annotations

import pytest
from spikeforge.sim import bench
from spikeforge.sim.rtl import BENCH_CONFIGS
from spikeforge.sim.verilator import have_verilator

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
    # The stated fixed overhead (per layer and per row, no event) is what the empty
    # step costs, but for the end-of-step record, router waits and the first step's
    # start (a few clocks).
    fixed = result["fixed_overhead"]
    assert fixed["per_step"] == 2 + 16 * fixed["per_row"]["hidden"] + 2 * fixed["per_row"]["out"]
    assert 0 <= quiet["clocks_per_step"] - fixed["per_step"] <= 12


def test_ssm_clocks_follow_the_cost_model():
    result = bench.ssm(sizes=((4, 4), (16, 16)), densities=(0.0, 1.0), steps=2)
    small, big = result["vs_size"]
    assert small["state_bits"] < big["state_bits"] == 16 * 16 * result["s_bits"]
    for p in result["vs_size"] + result["vs_density"]:  # with decay: every cell, every token
        assert p["pass_clocks_per_token"] == p["fixed_pass_clocks_per_token"]
    quiet, busy = result["vs_density"]
    assert quiet["gather_clocks_per_token"] == 10 < busy["gather_clocks_per_token"]
    assert busy["gather_clocks_per_token"] == 10 + busy["operand_events_per_token"]
    idle, full = result["vs_density_no_decay"]  # without decay idle rows are skipped
    # 2 chunks x (rows + 4), plus router waits: an output chunk sends P = 8 records.
    assert 2 * 4 <= idle["pass_clocks_per_token"] < full["pass_clocks_per_token"] == 2 * 20
