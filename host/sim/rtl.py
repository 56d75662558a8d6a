"""Generated Verilog of the NPU core: reference configurations, deterministic
output, and the Verilator lint with its waivers.

``generate(config)`` is byte-for-byte deterministic (no source paths, no
timestamps).  ``rtl/`` holds the Verilog of :data:`REFERENCE_CONFIGS`; a test
fails if it is stale (regenerate with ``spikeforge rtl --out rtl``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..contract.config import CoreConfig
from ..golden.integer import Format

__all__ = ["REFERENCE_CONFIGS", "BENCH_CONFIGS", "generate", "write", "lint", "LINT_WAIVERS",
           "config_named"]

REFERENCE_CONFIGS = {
    # A small core for quick builds and tests.
    "tiny": CoreConfig(lanes=2, max_layers=2, max_edges=4, max_neurons=16, max_inputs=16,
                       max_fanin=32, neuron_depth=16, weight_depth=256),
    # Sized for the digits network (64 -> 128 -> 10) with P = 8.
    "digits": CoreConfig(lanes=8, max_layers=4, max_edges=8, max_neurons=128, max_inputs=64,
                         max_fanin=128, neuron_depth=32, weight_depth=2048),
    # The simulated board's default: the digits network (64 -> 128 -> 10) and the
    # recall model (33 -> 16 + 16 -> SSM 16 x 16, fixed or selective) with P = 8.
    "demo": CoreConfig(lanes=8, max_layers=4, max_edges=8, max_neurons=128, max_inputs=64,
                       max_fanin=128, neuron_depth=32, weight_depth=2048, ssm_max_n=16,
                       ssm_max_m=16, ssm_depth=64, ssm_param_depth=512),
}
"""Shipped configurations: their Verilog is checked in under ``rtl/``."""

BENCH_CONFIGS = {
    "p8": CoreConfig(lanes=8, max_layers=4, max_edges=8, max_neurons=128, max_inputs=256,
                     max_fanin=256, neuron_depth=16, weight_depth=4096),
    "p32": CoreConfig(lanes=32, max_layers=4, max_edges=8, max_neurons=256, max_inputs=256,
                      max_fanin=256, neuron_depth=16, weight_depth=2048),
    # The character language model (docs/lm.md): 64 symbols -> embed 32 -> SSM 32 x 32
    # -> hidden 256 (recurrent: a fan-in of 320) -> out 64, with P = 8.
    "charlm": CoreConfig(lanes=8, fmt=Format(acc_bits=25), max_layers=4, max_edges=8,
                         max_neurons=256, max_inputs=64, max_fanin=512, neuron_depth=64,
                         weight_depth=16384, ssm_max_n=32, ssm_max_m=32, ssm_depth=128,
                         ssm_param_depth=512),
}
"""Built on demand for benchmarks (not checked in: the Verilog is large)."""

LINT_WAIVERS = {
    # Amaranth defines how operands of different widths extend and truncate; the
    # Verilog back end relies on Verilog's implicit rules for exactly that.
    "WIDTHEXPAND": "Amaranth's width extension is implicit in the generated Verilog",
    "WIDTHTRUNC": "Amaranth's truncation on assignment is implicit in the generated Verilog",
    # Yosys' Verilog back end writes `x = default; case ... endcase` processes
    # without a default branch and initialises registers where they are declared.
    "CASEINCOMPLETE": "Yosys assigns the default before the case statement",
    "PROCASSINIT": "Yosys initialises registers at their declaration",
    # Intermediate nets and unused slices of packed structs (e.g. a read-back mux).
    "UNUSEDSIGNAL": "intermediate nets and unused bits of packed structs",
    "DECLFILENAME": "one file holds the core and its submodules",
    # Zero-width signals are declared `[-1:0]` (the router's lane select when P = 1).
    "ASCRANGE": "zero-width signals are declared [-1:0]",
}
"""Verilator ``-Wall`` rules waived for Amaranth's output, each with the reason.
Everything else (latches, multiple drivers, combinational loops, ...) fails."""


def config_named(name: str) -> CoreConfig:
    configs = {**REFERENCE_CONFIGS, **BENCH_CONFIGS}
    if name not in configs:
        raise ValueError(f"unknown configuration {name!r}; choose one of {sorted(configs)}")
    return configs[name]


def generate(config: CoreConfig, name: str = "npu_core", timing=None) -> str:
    """Deterministic Verilog of the core for ``config`` (top module ``name``;
    ``timing``: its :class:`..contract.timing.TimingProfile`, ``None`` ``COMPACT``)."""
    from amaranth.back import verilog

    from ..gateware.core import NPUCore

    return verilog.convert(NPUCore(config=config, timing=timing), name=name, emit_src=False)


def write(names, out: Path, *, progress: bool = False) -> list[Path]:
    """Write ``npu_core_<name>.v`` for each configuration name into ``out``
    (``progress``: a bar over the configurations, a few seconds each).

    Each file is written to a temporary name and renamed, so an interrupted run
    leaves no half-written Verilog.
    """
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in tqdm(names, desc="Verilog", unit="config", disable=not progress, leave=False):
        text = generate(config_named(name), name=f"npu_core_{name}")
        path = out / f"npu_core_{name}.v"
        tmp = path.with_suffix(".v.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def lint(path: Path) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` with :data:`LINT_WAIVERS`; returns the result."""
    args = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{rule}" for rule in LINT_WAIVERS),
            str(path)]
    from .verilator import verilator_env

    return subprocess.run(args, env={**os.environ, **verilator_env()}, capture_output=True,
                          text=True)
