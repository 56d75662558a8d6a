"""The ``spikeforge`` command.

Exit codes by error family: 0 ok, 1 unexpected internal error, 2 usage (bad
arguments or option values, a ``--data`` file that cannot be read as its
format), 3 bad model file or NIR file, 4 a network or input
that breaks the integer model's rules, or a model that does not fit the core,
5 a device or link failure (cannot open, no answer, an error reply, a failed
read-back), a device run that is not bit-exact, or a board build that cannot
run (missing tools) or failed.  ``--json``
prints exactly one JSON object on stdout; progress and messages go to stderr.

This module parses the arguments and maps the error families to exit codes;
the subcommands are :mod:`.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .commands import (
    EXIT_BUILD,
    EXIT_DEVICE,
    EXIT_MODEL_FILE,
    EXIT_NETWORK,
    EXIT_USAGE,
    UsageError,
    cmd_boards,
    cmd_build,
    cmd_demo,
    cmd_eval,
    cmd_experiment,
    cmd_export_nir,
    cmd_import_nir,
    cmd_rtl,
    cmd_run,
    cmd_sim_board,
    cmd_train,
)


def _int_at_least(lowest: int):
    """An argparse type: an integer of at least ``lowest``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {lowest}")
        return value
    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         f"integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must list positive integers")
    return values


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from .golden.experiments import EXPERIMENTS
    from .golden.tasks import ENCODINGS
    from .golden.train import TASKS
    from .golden.twin import SURROGATES

    parser = argparse.ArgumentParser(prog="spikeforge", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--progress", action="store_true",
                       help="progress bars even when stderr is not a terminal")

    p = sub.add_parser("train", help="train a task model and save the integer model")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--out", type=Path, required=True, help="model file to write (.safetensors)")
    p.add_argument("--timesteps", "-T", type=_positive, help="virtual steps (digits) [8]")
    p.add_argument("--surrogate", choices=SURROGATES, help="surrogate gradient [fast-sigmoid]")
    p.add_argument("--hidden", type=_positive, help="hidden neurons (digits) [128]")
    p.add_argument("--epochs", type=_positive, help="training epochs")
    p.add_argument("--qat-epochs", type=_non_negative,
                   help="quantization-aware fine-tuning epochs")
    p.add_argument("--seed", type=int, help="training seed [0]")
    p.add_argument("--w-bits", type=int, help="weight bits [8]")
    p.add_argument("--encoding", choices=ENCODINGS, help="input coding (digits) [rate]")
    p.add_argument("--readout", choices=("membrane", "spikes"),
                   help="LI membrane or spike-count readout (digits) [membrane]")
    p.add_argument("--length", type=_positive, help="sequence length (recall) [32]")
    p.add_argument("--mode", choices=("fixed", "selective"), help="SSM decay (recall) [fixed]")
    common(p)
    p.set_defaults(func=cmd_train)

    def data_options(p):
        p.add_argument("--data", type=Path, metavar="FILE",
                       help="inputs for any model instead of a task's split: an .npz with "
                            "'inputs' [N, T, ...] and optionally 'labels' [N]; or, with "
                            "--bins, an N-MNIST .bin file or split folder, or an SHD .h5 "
                            "file (docs/data.md)")
        p.add_argument("--bins", type=_positive, metavar="T",
                       help="--data events: time bins per sample")
        p.add_argument("--duration", type=_positive, metavar="US",
                       help="--data events: the binned window in microseconds "
                            "[each sample's span]")
        p.add_argument("--t0", type=int, metavar="US",
                       help="--data events: where the window starts, in microseconds "
                            "[each sample's first event]")
        p.add_argument("--clip", action="store_true",
                       help="--data: clamp input values into the model's input range (for "
                            "spike inputs: any nonzero count is one spike)")

    p = sub.add_parser("eval", help="integer-model accuracy of a model file")
    p.add_argument("model", type=Path)
    p.add_argument("--split", choices=("test", "train"),
                   help="the task's split [test]; not with --data")
    p.add_argument("--rtl", metavar="CONFIG",
                   help="also run the split on the core's RTL (Verilator) for a core "
                        "configuration (e.g. digits) and check it against the golden model")
    p.add_argument("--limit", type=_positive,
                   help="with --rtl or --data: only the first N samples")
    data_options(p)
    p.add_argument("--plot", type=Path, metavar="DIR",
                   help="write a spike raster, membrane traces, the energy estimate (PNGs) "
                        "and DIR/report.md")
    common(p)
    p.set_defaults(func=cmd_eval)

    def device_options(p, default=None):
        p.add_argument("--device", default=default, required=default is None, metavar="URL",
                       help="sim://[CONFIG] (a simulated board), a serial port "
                            "(/dev/ttyUSB1), socket://HOST:PORT, xdma:///dev/xdma0"
                            + (f" [{default}]" if default else ""))
        p.add_argument("--timeout", type=_positive_float, default=2.0,
                       help="seconds to wait for a reply before retrying [2]")
        p.add_argument("--limit", type=_positive, help="only the first N samples")

    p = sub.add_parser("run", help="stream a model's test split (or --data) through a "
                                   "device and check it against the golden model")
    p.add_argument("model", type=Path)
    p.add_argument("--split", choices=("test", "train"),
                   help="the task's split [test]; not with --data")
    data_options(p)
    p.add_argument("--plot", type=Path, metavar="DIR",
                   help="write figures (raster, membranes, energy) and DIR/report.md")
    device_options(p)
    common(p)
    p.set_defaults(func=cmd_run)
    from .datacmd import add_parser as add_data_parser

    add_data_parser(sub, common, _positive)
    from .generate import add_parser as add_generate_parser

    add_generate_parser(sub, common, positive_float=_positive_float, count=_non_negative)

    from .stream import cmd_stream

    p = sub.add_parser("stream", help="feed tokens (stdin, one per line: an id, a comma-"
                       "separated input row, or 'reset') through a device one at a time, "
                       "keeping its state; outputs and clocks per token, checked against "
                       "the golden model")
    p.add_argument("model", type=Path)
    device_options(p, default="sim://demo")
    common(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("demo", help="the digits and recall models on the simulated board "
                                    "(or --device): accuracy, bit-exactness, throughput")
    device_options(p, default="sim://demo")
    p.add_argument("--retrain", action="store_true",
                   help="train fresh models instead of using the shipped ones")
    common(p)
    p.set_defaults(func=cmd_demo)
    from .golden.nirgraph import DEFAULT_DT

    p = sub.add_parser("import-nir", help="import a NIR graph (snnTorch, Norse, ...) into an "
                       "integer model file, with a fidelity report")
    p.add_argument("file", type=Path, help="NIR file (.nir)")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.safetensors)")
    p.add_argument("--w-bits", type=int, help="weight bits [8]")
    p.add_argument("--dt", type=_positive_float, default=None,
                   help=f"discretisation step (forward Euler) [detected: 1 for Sinabs' IF "
                        f"graphs, else {DEFAULT_DT}, snnTorch's]")
    p.add_argument("--reset", choices=("zero", "subtract", "subtract-next"),
                   help="reset of every spiking node the file does not mark (subtract-next: "
                        "snnTorch's subtraction) [detected: to v_reset, or subtract where the "
                        "file has no v_reset (NIR <= 1.0.4)]")
    p.add_argument("--framework", choices=("nir", "sinabs"),
                   help="how spiking nodes fire: NIR's one spike when v > v_threshold, or "
                        "Sinabs' IAF (spike counts, v >= v_threshold, floor -v_threshold) "
                        "[detected: sinabs for Sinabs' IF graphs]")
    p.add_argument("--input-kind", choices=("spike", "int"),
                   help="the network input: 0/1 spikes or signed integers [spike]")
    p.add_argument("--inputs", type=Path, metavar="NPZ",
                   help="inputs for the fidelity report: .npz with 'input' [T, B, N] and "
                        "optionally 'reference' (another simulator's output on it)")
    p.add_argument("--steps", "-T", type=_positive, default=32,
                   help="random inputs: time steps [32]")
    p.add_argument("--samples", type=_positive, default=16,
                   help="random inputs: samples [16]")
    p.add_argument("--seed", type=int, default=0, help="random inputs: seed [0]")
    p.add_argument("--check-against", choices=("sinabs", "snntorch", "norse"),
                   metavar="FRAMEWORK",
                   help="also run the file in that framework's own NIR import (sinabs, "
                        "snntorch or norse, installed beside spikeforge) on synthetic event "
                        "streams and report the agreement; implies its conventions")
    p.add_argument("--check-samples", type=_positive, default=200,
                   help="--check-against: synthetic samples [200]")
    p.add_argument("--check-steps", type=_positive,
                   help="--check-against: steps per sample [300 for a 2x34x34 input, else 256]")
    common(p)
    p.set_defaults(func=cmd_import_nir)

    p = sub.add_parser("export-nir", help="write an integer model file as a NIR graph")
    p.add_argument("model", type=Path)
    p.add_argument("file", type=Path, help="NIR file to write (.nir)")
    p.add_argument("--dt", type=_positive_float, default=DEFAULT_DT,
                   help=f"discretisation step written into tau and r [{DEFAULT_DT}]")
    common(p)
    p.set_defaults(func=cmd_export_nir)

    p = sub.add_parser("experiment", help="run one of the paper's experiments")
    p.add_argument("name", choices=EXPERIMENTS)
    p.add_argument("--plot", type=Path, help="write a plot: FILE.png, or a folder DIR for "
                   "PNGs plus DIR/report.md")
    p.add_argument("--timesteps", type=_int_list, help="T values for 'timesteps'")
    p.add_argument("--lengths", type=_int_list,
                   help="lengths for 'recall-length' and 'selectivity'")
    p.add_argument("--epochs", type=_positive, help="training epochs per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", choices=("default", "full"), default="default",
                   help="'sparsity': the points to train [default: a few minutes]")
    p.add_argument("--device", metavar="URL",
                   help="'sparsity': also run the best event-digits model on this device "
                        "(sim://, a serial port, socket://) for bit_exact and the energy from "
                        "the device's counters; 'selectivity': the selective models, for "
                        "bit_exact")
    p.add_argument("--device-samples", type=_positive,
                   help="--device: test samples to run [100 for 'sparsity', 8 sequences "
                        "for 'selectivity']")
    common(p)
    p.set_defaults(func=cmd_experiment)

    from .sim.rtl import BENCH_CONFIGS, REFERENCE_CONFIGS

    p = sub.add_parser("rtl", help="write deterministic Verilog of the NPU core")
    p.add_argument("--config", default="all",
                   choices=["all", *REFERENCE_CONFIGS, *BENCH_CONFIGS],
                   help="core configuration [all reference configurations]")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    common(p)
    p.set_defaults(func=cmd_rtl)

    p = sub.add_parser("bench", help="speed of the golden model and the RTL (JSON with --json)")
    p.add_argument("--quick", action="store_true", help="smaller sweep")
    p.add_argument("--no-rtl", action="store_true",
                   help="skip the RTL benchmarks (they build cores with Verilator)")
    from .boards.bench import DEFAULT_BOARDS

    p.add_argument("--no-boards", action="store_true",
                   help="skip the board builds (minutes each)")
    p.add_argument("--boards", type=lambda t: [board_named_arg(x) for x in t.split(",")],
                   default=list(DEFAULT_BOARDS),
                   help=f"boards to build and measure [{','.join(DEFAULT_BOARDS)}]")
    common(p)
    from .benchcmd import cmd_bench

    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sim-board", help="serve a simulated board (Verilator SoC) on a TCP port")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 [0: a free one]")
    p.add_argument("--config", default="demo", help="core configuration name [demo]")
    p.add_argument("--uart", action="store_true",
                   help="simulate the UART PHY bit by bit (full fidelity, slower)")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    p.set_defaults(func=cmd_sim_board)

    from .boards.defs import BOARDS
    from .boards.top import DEFAULT_TOP, TOPS

    p = sub.add_parser("boards", help="supported boards and their NPU capacity")
    common(p)
    p.set_defaults(func=cmd_boards)
    from .fit import add_parser as add_fit_parser

    add_fit_parser(sub, common)

    p = sub.add_parser("build", help="fit check, then a bitstream for a board (Yosys, nextpnr)")
    p.add_argument("--board", required=True, choices=sorted(BOARDS))
    p.add_argument("--model", type=Path, help="model file to fit-check against the board")
    p.add_argument("--config", help="core configuration: a name (e.g. tiny) or key=value,... "
                                    "overrides of the board's [the board's largest]")
    p.add_argument("--top", choices=sorted(TOPS), default=DEFAULT_TOP,
                   help=f"the design: soc (UART link + command engine + core) or core "
                        f"(the core alone on a scan chain) [{DEFAULT_TOP}]")
    p.add_argument("--out", type=Path, help="build folder [a new temporary folder]")
    p.add_argument("--seed", type=_int_at_least(1),
                   help="nextpnr's placement seed [the board's]")
    p.add_argument("--program", action="store_true", help="load the bitstream (openFPGALoader)")
    common(p)
    p.set_defaults(func=cmd_build)
    return parser


def board_named_arg(name: str) -> str:
    """An argparse type: a supported board's name."""
    from .boards.defs import BOARDS

    name = name.strip()
    if name not in BOARDS:
        raise argparse.ArgumentTypeError(f"unknown board {name!r}; choose from "
                                         f"{', '.join(sorted(BOARDS))}")
    return name


def _version() -> str:
    from . import __version__

    return __version__


def _error_families():
    """``(exception types, exit code, message prefix)``, most specific first (several
    are ValueErrors, caught last as usage errors)."""
    from .boards.build import BuildError
    from .contract.config import FitError
    from .errors import DeviceError
    from .golden.integer import NetworkError
    from .golden.modelfile import ModelFileError
    from .golden.nirgraph import NirError

    return (((NirError, ModelFileError), EXIT_MODEL_FILE, ""),
            ((NetworkError,), EXIT_NETWORK, ""),
            ((FitError,), EXIT_NETWORK, "the model does not fit the core: "),
            ((DeviceError,), EXIT_DEVICE, ""),
            ((BuildError,), EXIT_BUILD, ""),
            ((UsageError, ValueError), EXIT_USAGE, ""))


def one_line(text: str) -> str:
    """An error message as one printable line: line breaks and other control
    characters (a message may quote a file's contents) become escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def main(argv=None) -> int:
    import warnings

    from .golden.nirreset import show_warning

    warnings.showwarning = show_warning  # ConversionWarnings: one line on stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    families = _error_families()
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except tuple(t for types, _, _ in families for t in types) as exc:
        for types, code, prefix in families:
            if isinstance(exc, types):
                print(f"spikeforge: error: {prefix}{one_line(exc)}", file=sys.stderr)
                return code
        raise
    except KeyboardInterrupt:
        print("spikeforge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
