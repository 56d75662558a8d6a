"""The core on Verilator through a small C++ testbench (``core_tb.cpp``): fast
enough to run whole test splits and the benchmarks (millions of clocks per
second, against thousands through a per-clock Python testbench).

A build is cached per configuration: the folder is named by a hash of the
generated Verilog, the testbench source and the Verilator version, so the same
configuration is compiled once.  :meth:`VerilatedCore.run` sends one batch of
commands (image writes, clear, each step's input events) and parses the
records, the per-step clock counts and the counters.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..contract.compiler import Image
from ..contract.config import COUNTERS, CoreConfig, Region, input_word
from ..contract.harness import input_events
from .rtl import LINT_WAIVERS, generate
from .verilator import make_overrides, verilator_env, verilator_root

__all__ = ["VerilatedCore", "VsimResult", "Read", "cache_dir", "default_build_root",
           "VsimError"]

TESTBENCH = Path(__file__).with_name("core_tb.cpp")


class VsimError(RuntimeError):
    """The Verilator build or run failed (the message carries its output)."""


def cache_dir(name: str) -> Path:
    """``$SPIKEFORGE_BUILD`` or ``~/.cache/spikeforge``, plus ``name``: where builds
    (and the demo's freshly trained models) are kept."""
    root = os.environ.get("SPIKEFORGE_BUILD")
    return (Path(root) if root else Path.home() / ".cache" / "spikeforge") / name


def default_build_root() -> Path:
    """:func:`cache_dir` ``("vsim")``."""
    return cache_dir("vsim")


@dataclass
class Read:
    """A program element of :meth:`VerilatedCore.run`: read these host addresses here."""

    addresses: list[int]


@dataclass
class VsimResult:
    steps: list[list[int]]
    """Raw output records, per step."""
    step_clocks: list[int]
    counters: list[int]
    reads: list[int]
    """The words read at the ``reads`` addresses passed to :meth:`VerilatedCore.run`."""
    clocks: int
    seconds: float

    def counter(self, config: CoreConfig, layer: int, name: str) -> int:
        return self.counters[layer * len(COUNTERS) + COUNTERS.index(name)]


class VerilatedCore:
    """A Verilator build of the core for ``config``, compiled on first use."""

    def __init__(self, config: CoreConfig, build_root: Path | None = None):
        if config.host_data_bits > 64 or config.host_addr_bits > 64:
            raise VsimError(f"the C++ testbench handles host words up to 64 bits, not "
                            f"{config.host_data_bits}")
        self.config = config
        self.verilog = generate(config, name="npu_core")
        env = {**os.environ, **verilator_env()}
        version = subprocess.run(["verilator", "--version"], env=env, capture_output=True,
                                 text=True).stdout.strip()
        digest = hashlib.sha256(
            (self.verilog + TESTBENCH.read_text() + version).encode()).hexdigest()[:16]
        self.build_dir = (build_root or default_build_root()) / digest
        self.binary = self.build_dir / "obj" / "core_tb"

    def build(self) -> Path:
        """Compile if not yet built; return the binary."""
        if self.binary.exists():
            return self.binary
        self.build_dir.mkdir(parents=True, exist_ok=True)
        (self.build_dir / "npu_core.v").write_text(self.verilog)
        args = ["verilator", "--cc", "--exe", "-O2", "--top-module", "npu_core",
                "--prefix", "Vcore", "-Mdir", "obj", "-o", "core_tb",
                *(f"-Wno-{rule}" for rule in LINT_WAIVERS), "npu_core.v", str(TESTBENCH)]
        env = {**os.environ, **verilator_env()}
        result = subprocess.run(args, cwd=self.build_dir, env=env, capture_output=True,
                                text=True)
        if result.returncode == 0:
            # The wheel's verilated.mk needs a few repairs (see make_overrides).
            make = ["make", "-C", "obj", "-f", "Vcore.mk", "-j", "2",
                    *make_overrides(verilator_root())]
            result = subprocess.run(make, cwd=self.build_dir, env=env, capture_output=True,
                                    text=True)
        if result.returncode != 0 or not self.binary.exists():
            raise VsimError(f"Verilator build failed in {self.build_dir}:\n"
                            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return self.binary

    def run(self, image: Image, steps, *, stall: float = 0.0, seed: int = 0,
            read_counters: bool = True, reads: list[int] = (),
            timeout: float = 3600.0) -> VsimResult:
        """Load ``image``, clear, run ``steps`` (each a list of input values, zeros
        not sent; ``None`` resets the state between samples; a :class:`Read` reads
        host addresses at that point, returned first in ``reads``) with the output
        ``ready`` low on a ``stall`` fraction of clocks.  ``clear`` also zeroes the
        counters, so after a reset they count from there."""
        if image.config != self.config:
            raise VsimError("the image was compiled for another core configuration")
        binary = self.build()
        c = self.config
        lines = [f"W {addr:x} {data:x}" for addr, data in image.writes]
        lines.append("C")
        if stall:
            lines.append(f"B {int(stall * 1000):x} {random.Random(seed).getrandbits(63) | 1:x}")
        for step in steps:
            if isinstance(step, Read):  # host reads at this point of the program
                lines += [f"R {addr:x}" for addr in step.addresses]
                continue
            if step is None:  # a fresh state: membranes zeroed, event lists cleared
                lines += [f"W {addr:x} 0" for addr, _ in image.reset_writes]
                lines.append("C")
                continue
            events = input_events(step)
            lines.append(f"S {len(events):x}")
            lines += [f"{input_word(c, j, v, 0):x}" for j, v in events]
            lines.append(f"{input_word(c, 0, 0, 1):x}")
        n_counters = len(COUNTERS) * c.max_layers + 2
        if read_counters:
            lines += [f"R {c.address(Region.COUNTERS, 0, i):x}" for i in range(n_counters)]
        lines += [f"R {addr:x}" for addr in reads]
        lines.append("Q")
        proc = subprocess.run([str(binary)], input="\n".join(lines) + "\n",
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout.splitlines()
        errors = [line for line in out if line.startswith("E ")]
        if proc.returncode != 0 or errors:
            raise VsimError(f"the simulation failed: {errors or proc.stderr[-2000:]}")
        records: list[list[int]] = [[]]
        step_clocks, counters = [], []
        clocks, seconds = 0, 0.0
        for line in out:
            tag, _, rest = line.partition(" ")
            if tag == "O":
                records[-1].append(int(rest, 16))
            elif tag == "T":
                step_clocks.append(int(rest, 16))
                records.append([])
            elif tag == "D":
                counters.append(int(rest, 16))
            elif tag == "X":
                total, secs = rest.split()
                clocks, seconds = int(total, 16), float(secs)
        records.pop()  # the list opened after the last step
        expected = sum(isinstance(step, list) for step in steps)
        if len(records) != expected:
            raise VsimError(f"expected {expected} steps, got {len(records)}")
        # Reads come back in program order: Read markers, then counters, then ``reads``.
        early = sum(len(step.addresses) for step in steps if isinstance(step, Read))
        split = early + (n_counters if read_counters else 0)
        return VsimResult(steps=records, step_clocks=step_clocks,
                          counters=counters[early:split],
                          reads=counters[:early] + counters[split:], clocks=clocks,
                          seconds=seconds)
