"""The simulated board: a Verilator build of the SoC top (:class:`.link.SoC`)
with the C++ harness ``simboard.cpp`` serving the byte stream on a TCP port
(``docs/device.md``).  ``spikeforge sim-board`` starts one.

:func:`build_simboard` compiles the board for a configuration once: the build
folder is named by a hash of the generated Verilog, the harness source, the
link and the Verilator version, under ``$SPIKEFORGE_BUILD`` or
``~/.cache/spikeforge`` (``simboard/<hash>``).  :class:`SimBoard` starts it as a
child process, reads ``LISTENING <port>`` and stops it on :meth:`SimBoard.close`
(or at the end of a ``with`` block).

With ``uart=True`` the SoC is built with ``link="uart"`` at ``SIM_CLOCK_HZ`` and
``SIM_BAUD`` (16 clocks per bit) and the harness drives its UART pins bit by bit;
it is the ECP5 boards' form (``TimingProfile.PIPELINED``: the pipelined core, the
receive FIFO's register stage, the engine's INFO bytes in logic and split
checks), so that form runs against real byte streams too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from ..contract.config import CoreConfig
from ..contract.framing import Frame
from ..contract.payloads import pack_error
from ..contract.protocol import ERROR_REPLY, ErrorCode
from .rtl import LINT_WAIVERS, config_named
from .verilator import make_overrides, verilator_env, verilator_root
from .vsim import VsimError, cache_dir

__all__ = ["build_simboard", "simboard_verilog", "SimBoard", "SimBoardError", "SIM_CLOCK_HZ",
           "SIM_BAUD", "HARNESS"]

HARNESS = Path(__file__).with_name("simboard.cpp")
SIM_CLOCK_HZ = 12_000_000
"""The clock the simulated UART board claims (INFO ``clock_hz``)."""
SIM_BAUD = 750_000
"""Its baud rate: 16 clocks per bit."""


class SimBoardError(VsimError):
    """The simulated board failed to build or start (the message carries its output)."""


def _root() -> Path:
    return cache_dir("simboard")


def _config(config) -> CoreConfig:
    if isinstance(config, str):
        return config_named(config)
    if not isinstance(config, CoreConfig):
        raise TypeError(f"config must be a CoreConfig or a configuration name, not {config!r}")
    return config


def simboard_verilog(config: CoreConfig, *, uart: bool = False) -> str:
    """Deterministic Verilog of the SoC top (module ``soc``) the board simulates.

    The SoC runs in a clock domain without a reset input (ports: ``clk``, the
    link's and ``idle``): it starts from its registers' initial values, as an
    FPGA does after configuration.  A reset input would put every register's
    next-state logic downstream of a top-level input, which Verilator then
    evaluates on every ``eval()`` as well as at the clock edge; without it the
    board simulates about 1.6 times as many clocks per second."""
    from amaranth import ClockDomain, ClockSignal, Elaboratable, Module
    from amaranth.back import verilog

    from ..contract.timing import PIPELINED
    from ..gateware.link import SoC

    soc = SoC(config=config, link="uart", clk_freq=SIM_CLOCK_HZ, baud=SIM_BAUD,
              timing=PIPELINED) if uart else SoC(config=config, link="stream")

    class ResetlessTop(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain("sync", reset_less=True)
            m.submodules.soc = soc
            return m

    ports = [ClockSignal("sync"), *(port for _, _, port in soc.signature.flatten(soc))]
    return verilog.convert(ResetlessTop(), name="soc", ports=ports, emit_src=False)


SPEED_FLAGS = ("OPT_FAST=-O3", "OPT_GLOBAL=-O2")
"""``make`` settings of the simulated board's C++ (the wheel's ``verilated.mk`` compiles
for size, ``-Os``): about 1.8 times the clocks per second on this machine."""


def build_simboard(config, *, uart: bool = False, build_root: Path | None = None) -> Path:
    """Compile the simulated board for ``config`` (a CoreConfig or a name) if not yet
    built; return the binary."""
    config = _config(config)
    text = simboard_verilog(config, uart=uart)
    env = {**os.environ, **verilator_env()}
    version = subprocess.run(["verilator", "--version"], env=env, capture_output=True,
                             text=True).stdout.strip()
    key = text + HARNESS.read_text() + version + ("uart" if uart else "stream") + str(SPEED_FLAGS)
    build_dir = (build_root or _root()) / hashlib.sha256(key.encode()).hexdigest()[:16]
    binary = build_dir / "obj" / "simboard"
    if binary.exists():
        return binary
    build_dir.mkdir(parents=True, exist_ok=True)
    if sys.stderr.isatty():  # (about a minute on 2 cores; silent in pipes and tests)
        print(f"spikeforge: building the simulated board ({config.lanes} lanes"
              f"{', UART' if uart else ''}) once, about a minute; cached in {build_dir}",
              file=sys.stderr, flush=True)
    (build_dir / "soc.v").write_text(text)
    args = ["verilator", "--cc", "--exe", "-O2", "--top-module", "soc", "--prefix", "Vsoc",
            "-Mdir", "obj", "-o", "simboard", *(f"-Wno-{rule}" for rule in LINT_WAIVERS),
            *(["-CFLAGS", "-DSIMBOARD_UART"] if uart else []), "soc.v", str(HARNESS)]
    result = subprocess.run(args, cwd=build_dir, env=env, capture_output=True, text=True)
    if result.returncode == 0:
        make = ["make", "-C", "obj", "-f", "Vsoc.mk", "-j", "2",
                *make_overrides(verilator_root()), *SPEED_FLAGS]
        result = subprocess.run(make, cwd=build_dir, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not binary.exists():
        raise SimBoardError(f"the simulated board failed to build in {build_dir}:\n"
                            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return binary


class SimBoard:
    """A running simulated board for ``config`` (a CoreConfig or a configuration name).

    ``port`` 0 picks a free port.  :meth:`start` builds if needed and starts the
    process; :attr:`port` and :attr:`url` (``socket://127.0.0.1:PORT``) are then
    valid; :meth:`close` stops it (SIGTERM, then SIGKILL) and reaps it.  With
    ``stats=True`` the harness reports each connection's clocks
    (:meth:`session`).  Usable as a context manager.
    """

    def __init__(self, config="demo", *, port: int = 0, uart: bool = False,
                 clocks_per_bit: int | None = None, stats: bool = False,
                 build_root: Path | None = None):
        self.config = _config(config)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, not {port!r}")
        if clocks_per_bit is not None and (not isinstance(clocks_per_bit, int)
                                           or clocks_per_bit < 4):
            raise ValueError(f"clocks_per_bit must be an integer >= 4, not {clocks_per_bit!r}")
        self.uart = bool(uart)
        self.requested_port = port
        self.clocks_per_bit = clocks_per_bit or SIM_CLOCK_HZ // SIM_BAUD
        self.stats = stats
        self.build_root = build_root
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.sim_speed: float | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise SimBoardError("the simulated board is not running (call start())")
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> SimBoard:
        if self.process is not None:
            return self
        binary = build_simboard(self.config, uart=self.uart, build_root=self.build_root)
        busy = Frame(ERROR_REPLY, 0, pack_error(ErrorCode.BUSY)).encode()
        args = [str(binary), "--port", str(self.requested_port), "--cpb",
                str(self.clocks_per_bit), "--busy", busy.hex(),
                *(["--stats"] if self.stats else [])]
        # stderr is inherited: the harness' messages show, and never fill a pipe.
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        line = self.process.stdout.readline()
        if not line.startswith("LISTENING "):
            self.close()
            raise SimBoardError(f"the simulated board did not start (its first line: "
                                f"{line!r}; its messages are on stderr)")
        self.port = int(line.split()[1])
        self._thread = threading.Thread(target=self._reader, args=(self.process.stdout,),
                                        daemon=True)
        self._thread.start()
        return self

    def _reader(self, stdout):
        for line in stdout:  # until the process exits
            with self._cond:
                self._lines.append(line.strip())
                self._cond.notify_all()

    def session(self, timeout: float = 30.0) -> tuple[int, int, int]:
        """``(clocks, bytes in, bytes out)`` of the next connection that closed
        (needs ``stats=True``): clocks from its first byte in to its last byte out.
        ``sim_speed`` is then the clocks per second of the simulation itself in that
        connection (the time spent ticking, not waiting for the host)."""
        with self._cond:
            if not self._cond.wait_for(lambda: any(s.startswith("SESSION ")
                                                   for s in self._lines), timeout):
                raise SimBoardError("no SESSION report from the simulated board")
            line = next(s for s in self._lines if s.startswith("SESSION "))
            self._lines.remove(line)
        clocks, n_in, n_out, sim_clocks, sim_ns = (int(v) for v in line.split()[1:])
        self.sim_speed = sim_clocks / sim_ns * 1e9 if sim_ns else None
        return clocks, n_in, n_out

    def close(self) -> None:
        proc, self.process = self.process, None
        self.port = None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)  # the process is gone: its stdout is at EOF
        with contextlib.suppress(OSError):
            proc.stdout.close()

    def __enter__(self) -> SimBoard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "process", None) is not None:
            self.close()
