"""``spikeforge fit MODEL [--board B]``: whether a model fits each board, its
limiting capacity, the estimated FPGA resources of the board's build and the
clocks per sample, in seconds and with no tool run (:mod:`.boards.fit`); and the
checks ``spikeforge build`` makes before anything is created (:func:`preflight`).

Exit codes (:mod:`.cli`): 0 when the model fits the board (without ``--board``:
at least one board), 4 when it fits none, 3 for a bad model file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .commands import EXIT_NETWORK, EXIT_OK, UsageError, _emit

__all__ = ["add_parser", "cmd_fit", "preflight", "require_programmer"]


def add_parser(sub, common) -> None:
    """Register ``fit`` on the ``spikeforge`` subparsers (``common``: the shared
    ``--json``/``--quiet``/``--progress`` options)."""
    from .boards.defs import BOARDS

    p = sub.add_parser("fit", help="whether a model fits each board: the limiting capacity, "
                                   "estimated LUT/FF/BRAM/DSP and clocks per sample, in "
                                   "seconds, before any build")
    p.add_argument("model", type=Path, help="model file (.safetensors)")
    p.add_argument("--board", choices=sorted(BOARDS), help="only this board [every board]")
    common(p)
    p.set_defaults(func=cmd_fit)


def _pct(ratio) -> str:
    return "" if ratio is None else f"{100 * ratio:.0f}%"


def _seconds(s: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _limit_text(lim: dict) -> str:
    text = lim["resource"]
    if lim.get("used") is not None:
        text += f" {lim['used']} / {lim['available']}"
        if lim.get("ratio") is not None:
            text += f" ({_pct(lim['ratio'])})"
    if lim.get("also"):
        text += f"; also {', '.join(lim['also'])}"
    return text


_MARKS = {"recorded": "r", "synthesis": "s", "per-lane model": "m", "none": "-"}


def _lines(r):
    fitting = [b for b in r["boards"] if b["fits"]]
    if not fitting:
        yield f"{r['model']}: fits no board"
    elif r["task"]:
        yield f"{r['model']}: clocks of the core on the {r['task']} task's test split"
    else:
        yield (f"{r['model']}: no task data in the file: clocks per step from no input to "
               f"every input and neuron active (a bound)")
    yield (f"{'board':<15} {'fits':<4} {'clocks/sample':>13} {'time/sample':>21}  "
           f"{'LUT':>11} {'FF':>11} {'BRAM':>8} {'DSP':>8} {'SPRAM':>6}    "
           f"limiting (used / limit)")
    notes, bases = {}, {}
    for b in r["boards"]:
        res = b["resources"]["resources"]
        bases.setdefault(b["resources"]["kind"], set()).add(b["resources"]["basis"])

        def cell(name, width, res=res):
            u = res.get(name)
            return f"{'-':>{width}}" if u is None else \
                f"{u['used']:>{width - 5}} {_pct(u['ratio']):>4}"

        clocks, when = "-", ""
        c = b["clocks"]
        if c and c["kind"] == "estimate":
            clocks = f"{c['per_sample']:.0f}"
            when = f"{_seconds(c['seconds_per_sample'])} at {b['clock_mhz']:g} MHz"
        elif c:
            clocks = f"{c['per_step']['min']}-{c['per_step']['max']}"
            when = f"<= {_seconds(c['seconds_per_step']['max'])} at {b['clock_mhz']:g} MHz"
        if not b["fits"]:
            notes.setdefault(b["error"], []).append(b["board"])
        yield (f"{b['board']:<15} {'yes' if b['fits'] else 'NO':<4} {clocks:>13} {when:>21}  "
               f"{cell('LUT', 11)} {cell('FF', 11)} {cell('BRAM', 8)} {cell('DSP', 8)} "
               f"{cell('SPRAM', 6)} {_MARKS[b['resources']['kind']]}  "
               f"{_limit_text(b['limiting'])}")
    for error, names in notes.items():
        yield f"  does not fit {', '.join(names)}: {error}"
    for kind, texts in bases.items():
        for text in sorted(texts):
            yield f"  {_MARKS[kind]}: {text}"
    c = next((b["clocks"] for b in fitting if b["clocks"]), None)
    if c and c["kind"] == "estimate":
        yield (f"  clocks: per sample, the mean over {c['samples']} samples of T={c['timesteps']}"
               f" steps, by the core's clock model on the golden model's run (exact without "
               f"output backpressure); the link's transfer time is not included (on a UART "
               f"board at 115200 baud: 87 us per byte)")
    elif c:
        yield "  clocks: per step (no task data in the model file for a per-sample figure)"


def _fit_error(report: dict, board: str | None) -> str:
    """The one-line refusal when the model fits none of the boards asked about: per
    distinct reason, the boards, the limiting capacity and the compiler's message."""
    groups: dict[tuple, list[str]] = {}
    for b in report["boards"]:
        groups.setdefault((b["limiting"]["resource"], b["error"]), []).append(b["board"])
    if board:
        ((limit, error),) = groups
        return f"the model does not fit {board} ({limit}): {error}"
    return "the model fits no board: " + "; ".join(
        f"{', '.join(names)} ({limit}): {error}" for (limit, error), names in groups.items())


def cmd_fit(args) -> int:
    from .boards.defs import BOARDS, board_named
    from .boards.fit import fit_report

    boards = [board_named(args.board)] if args.board else list(BOARDS.values())
    report = fit_report(args.model, boards)
    _emit(report, args.json, _lines)
    if not any(b["fits"] for b in report["boards"]):
        from .cli import one_line

        print(f"spikeforge: error: {one_line(_fit_error(report, args.board))}", file=sys.stderr)
        return EXIT_NETWORK
    return EXIT_OK


# ------------------------------------------------------------------ build
PROGRAMMER = "openFPGALoader"


def require_programmer() -> str:
    """The path of openFPGALoader, or :class:`~.boards.build.ToolMissing` saying how
    to install it (it is not a Python package)."""
    from .boards.build import ToolMissing

    path = shutil.which(PROGRAMMER)
    if path is None:
        raise ToolMissing(
            f"--program needs {PROGRAMMER}, which is not on PATH (checked before building): "
            f"it is not a pip package; install it from your OS packages (apt install "
            f"openfpgaloader, brew install openfpgaloader, pacman -S openfpgaloader) or a "
            f"release of https://github.com/trabucayre/openFPGALoader/releases")
    return path


def preflight(args):
    """``build``'s checks, before any folder or tool: the board and ``--config``, the
    model on that configuration (the compiler ``fit`` and ``Device.load`` use; its
    :class:`FitError` names the limit), the board's budget, with ``--program`` the
    programmer, then the build tools.  Returns ``(board, config, build folder)``: the
    folder is ``--out`` (made by the build) or a new temporary one."""
    import tempfile

    from .boards import build as bbuild
    from .boards.defs import board_named

    board = board_named(args.board)
    config = bbuild.parse_config(args.config, board)
    if args.model is not None:
        bbuild.fit_model(args.model, config)
    bbuild.check_budget(board, config)
    if args.program:
        if board.family == "xilinx":
            raise UsageError(f"--program: {board.name} builds vendor project files only")
        require_programmer()
    if board.family != "xilinx":
        bbuild.tool_env(board.family)
    return board, config, args.out or Path(tempfile.mkdtemp(prefix=f"spikeforge-{board.name}-"))
