"""The ``spikeforge`` subcommands: ``cmd_<name>(args)`` runs one with the arguments
:mod:`.cli` parsed and returns its exit code (``EXIT_*``, described in :mod:`.cli`);
a bad option value that only shows now raises :class:`UsageError`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_MODEL_FILE, EXIT_NETWORK, EXIT_DEVICE = 0, 1, 2, 3, 4, 5
EXIT_BUILD = EXIT_DEVICE  # a board build that cannot run or failed


class UsageError(Exception):
    """A bad option value found after argument parsing."""


def _check_out(path: Path, flag: str) -> None:
    """Refuse an output file path before any work: its directory must exist and the
    path must not be a directory (else an OSError at save time, after the run)."""
    where = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise UsageError(f"{where}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{where}: the directory {str(path.parent)!r} does not exist")


def _emit(result: dict, as_json: bool, lines) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for line in lines(result):
            print(line)


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty() or args.progress


# ---------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from .golden.modelfile import save_model
    from .golden.train import config_for, evaluate, train

    _check_out(args.out, "--out")  # before training, not after it
    cfg = config_for(args.task, timesteps=args.timesteps, surrogate=args.surrogate,
                     hidden=args.hidden, epochs=args.epochs, seed=args.seed,
                     w_bits=args.w_bits, encoding=args.encoding, readout=args.readout,
                     length=args.length, mode=args.mode, qat_epochs=args.qat_epochs)
    net, meta = train(cfg, progress=_progress(args))
    save_model(args.out, net, meta)
    report = evaluate(net, meta)
    report.update(model=str(args.out), training={k: v for k, v in meta["training"].items()
                                                 if not k.endswith("loss")})
    _emit(report, args.json, lambda r: [
        f"saved {r['model']}",
        f"integer-model test accuracy {r['accuracy']:.4f} over {r['samples']} samples "
        f"(T={r['timesteps']}, w_bits={r['w_bits']})",
        *(f"  {k}: {v:.4f}" for k, v in r["training"].items())])
    return EXIT_OK


def cmd_eval(args) -> int:
    from .golden.modelfile import ModelFileError
    from .golden.train import evaluate

    if args.data is not None:
        return _eval_data(args)
    _task_options(args)
    net, meta = _task_model(args.model, args.split)
    try:
        report = evaluate(net, meta, split=args.split)
    except KeyError as exc:
        raise ModelFileError(f"{args.model}: the metadata has no {exc.args[0]!r} entry, "
                             f"needed to evaluate the {meta['task']!r} task") from exc
    if args.rtl:
        from .sim.evaluate import evaluate_on_rtl
        from .sim.rtl import config_named

        rtl = evaluate_on_rtl(net, meta, config_named(args.rtl), split=args.split,
                              limit=args.limit)
        report["rtl"] = {"config": args.rtl, **rtl}
    _eval_energy_and_plots(args, net, meta, report)

    def lines(r):
        yield (f"{r['task']}: accuracy {r['accuracy']:.4f} on {r['samples']} {args.split} "
               f"samples, T={r['timesteps']}, w_bits={r['w_bits']}, "
               f"{r['synops_per_sample']:.0f} synaptic ops per sample")
        if "rtl" in r:
            q = r["rtl"]
            yield (f"RTL ({q['config']}, Verilator): accuracy {q['accuracy_rtl']:.4f} on "
                   f"{q['samples']} samples, bit-exact: {q['bit_exact']}, "
                   f"{q['clocks_per_step']:.0f} clocks per step")
        if "energy" in r:
            yield _energy_line(r["energy"])
        if "report" in r:
            yield f"report: {r['report']}"

    _emit(report, args.json, lines)
    return EXIT_OK


def _energy_line(e: dict) -> str:
    from .golden.energy import summary_line

    return summary_line(e)


# ------------------------------------------------------------ --data (any model)
_DATA_FLAGS = (("bins", "--bins"), ("duration", "--duration"), ("t0", "--t0"),
               ("clip", "--clip"))


def _task_options(args) -> None:
    """A task's split: the ``--data`` options are refused, ``--split`` defaults to test."""
    for name, flag in _DATA_FLAGS:
        if getattr(args, name) not in (None, False):
            raise UsageError(f"{flag} goes with --data")
    args.split = args.split or "test"


def _any_model(path: Path):
    """``(net, meta, readout)`` of any model file; the readout rule is
    :func:`~spikeforge.golden.data.readout_rule`'s (a bad one: exit 3)."""
    from .golden.data import readout_rule
    from .golden.modelfile import ModelFileError, load_model

    net, meta = load_model(path)
    try:
        return net, meta, readout_rule(net, meta)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def _data_inputs(args, net):
    """``(x [T, N, input_size], Data)`` from ``--data`` (its first ``--limit``
    samples), checked against the model's input (exit 4 when they do not fit)."""
    from .golden.data import is_event_data, load_data, model_inputs

    if args.split:
        raise UsageError("--split chooses a task's split; it does not go with --data")
    events = is_event_data(args.data)
    if events and args.bins is None:
        raise UsageError(f"--data {args.data}: event data needs --bins T (time bins per "
                         f"sample)")
    if not events:
        given = [flag for name, flag in _DATA_FLAGS[:3] if getattr(args, name) is not None]
        if given:
            raise UsageError(f"{given[0]} is for event data; --data {args.data} is not "
                             f"(an .npz data file holds frames already)")
    data = load_data(args.data, bins=args.bins, duration=args.duration, t0=args.t0,
                     limit=args.limit, progress=_progress(args))
    return model_inputs(net, data.inputs, clip=args.clip, source=str(args.data)), data


def _eval_data(args) -> int:
    """``eval MODEL --data FILE``: the golden model on the data (docs/data.md)."""
    from .golden.data import evaluate

    if args.rtl:
        raise UsageError("--rtl runs a task's split on the RTL; it does not take --data")
    net, meta, readout = _any_model(args.model)
    x, data = _data_inputs(args, net)
    report = {"model": str(args.model), "data": str(args.data), "data_info": data.info,
              **evaluate(net, x, data.labels, readout=readout, progress=_progress(args))}
    if args.plot:
        _data_report(args, net, x, report)
    _emit(report, args.json, _data_lines)
    return EXIT_OK


def _data_lines(r):
    accuracy = "no labels" if "accuracy" not in r else f"accuracy {r['accuracy']:.4f}"
    yield (f"{r['data']}: {accuracy} on {r['samples']} samples, T={r['timesteps']}, readout "
           f"{r['readout']}, {r['synops_per_sample']:.0f} synaptic ops per sample")
    if r["spikes"]:
        yield "spikes per sample: " + ", ".join(
            f"{name} {s['per_sample']:.4g}" for name, s in r["spikes"].items())
    yield _energy_line(r["energy"])
    if "report" in r:
        yield f"report: {r['report']}"


def _data_report(args, net, x, report) -> None:
    """``eval --data --plot DIR``: the first sample's figures, the energy estimate
    and ``DIR/report.md``."""
    from .golden import report as rep

    figures = rep.sample_figures(net, net.run(x[:, :1]), args.plot, sample=0)
    figures.append(rep.energy_figure(report["energy"], args.plot))
    summary = {k: report[k] for k in ("model", "data", "samples", "timesteps", "readout",
                                      "accuracy", "synops_per_sample") if k in report}
    path = rep.write_report(args.plot, title=f"spikeforge eval: {args.model.name} on "
                            f"{args.data.name}", summary=summary, energy=report["energy"],
                            figures=figures)
    report["report"] = str(path)


def _task_model(path: Path, split: str):
    """A model file whose metadata names a known task, whose ``split`` it can build
    and whose network takes that task's input.  A valid model file may carry
    metadata that does not describe a task (saved by other code): that is a bad
    model file here (exit 3), not a crash."""
    from .golden.modelfile import ModelFileError, load_model
    from .golden.train import TASKS, check_task_meta

    net, meta = load_model(path)
    if meta.get("task") not in TASKS:
        raise ModelFileError(f"{path}: the metadata names no known task "
                             f"(task={meta.get('task')!r}; expected one of {TASKS}); "
                             f"give it data with --data FILE")
    try:
        check_task_meta(meta, split, net)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    return net, meta


def _device_lines(r):
    accuracy = "no labels" if r["accuracy_device"] is None else \
        f"accuracy {r['accuracy_device']:.4f} (golden {r['accuracy_golden']:.4f})"
    yield (f"{r.get('data') or r['task']} on {r['device']}: {accuracy} over {r['samples']} "
           f"samples, decisions agree on {r['agreement']:.4f}, bit-exact: {r['bit_exact']}, "
           f"{r['steps_per_second']:.0f} steps/s")
    link = r.get("link_stats")
    if link and link["retries"]:
        yield (f"link: {link['retries']} re-sends for {link['requests']} requests, "
               f"{link['damaged_replies']} damaged replies")


def cmd_run(args) -> int:
    """``run MODEL --device URL``: a task model's split, or with ``--data`` any model
    on the data, through the device, checked against the golden model."""
    from .device import open as open_device
    from .evaluate import evaluate_on_device
    from .golden.train import task_data

    if args.data is None:
        _task_options(args)
        net, meta = _task_model(args.model, args.split)
        (x, y), readout = task_data(meta, args.split), meta["readout"]
    else:
        net, meta, readout = _any_model(args.model)
        x, data = _data_inputs(args, net)
        y = data.labels
    with open_device(args.device, timeout=args.timeout, progress=_progress(args)) as dev:
        report = evaluate_on_device(dev, net, meta, limit=args.limit, progress=_progress(args),
                                    data=(x, y), readout=readout)
        report["device"] = dev.url
        report["model"] = str(args.model)
        report["link_stats"] = dev.link_stats()
    if args.data is not None:
        report["data"] = str(args.data)
    if args.plot:
        _run_report(args, net, x, report)
    _emit(report, args.json, _device_lines)
    return EXIT_OK if report["bit_exact"] else EXIT_DEVICE


def _run_report(args, net, x, report) -> None:
    """``run --plot DIR``: raster and membrane figures of the first sample, the
    energy estimate from the device's counters, and ``DIR/report.md``."""
    from .golden import report as rep

    trace = net.run(x[:, :1])
    figures = rep.sample_figures(net, trace, args.plot, sample=0)
    figures.append(rep.energy_figure(report["energy"], args.plot))
    summary = {k: report[k] for k in ("model", "device", "task", "data", "samples",
                                      "timesteps", "accuracy_device", "accuracy_golden",
                                      "agreement", "bit_exact", "steps_per_second")
               if k in report}
    notes = ["The raster and membrane figures show the golden model's run of the first "
             "sample, which the device reproduced bit for bit."
             if report["bit_exact"] else
             "The device's run was NOT bit-exact; the figures show the golden model's run."]
    path = rep.write_report(args.plot, title=f"spikeforge run: {args.model.name} on "
                            f"{report['device']}", summary=summary, energy=report["energy"],
                            figures=figures, notes=notes)
    report["report"] = str(path)


def cmd_demo(args) -> int:
    from . import demo

    report = demo.run(args.device, limit=args.limit, retrain=args.retrain,
                      progress=_progress(args), timeout=args.timeout)
    _emit(report, args.json, demo.describe)
    return EXIT_OK if all(t["bit_exact"] for t in report["tasks"].values()) else EXIT_DEVICE


def _eval_energy_and_plots(args, net, meta, report) -> None:
    """``eval``: the energy estimate from the golden counts (and the RTL counters with
    ``--rtl``); with ``--plot DIR`` the figures and ``DIR/report.md``."""
    from .golden.energy import counts_from_counters, counts_from_run, estimate
    from .golden.train import task_data

    x, _ = task_data(meta, args.split)
    report["energy"] = estimate(net, counts_from_run(net, x))
    if "rtl" in report and "counters" in report["rtl"]:
        ran = x[:, :report["rtl"]["samples"]]
        report["rtl"]["energy"] = estimate(net, counts_from_counters(
            net, report["rtl"]["counters"], ran, golden=counts_from_run(net, ran)))
    if args.plot:
        from .golden import report as rep

        figures = rep.sample_figures(net, net.run(x[:, :1]), args.plot, sample=0)
        figures.append(rep.energy_figure(report["energy"], args.plot))
        summary = {k: v for k, v in report.items() if k not in ("energy", "rtl")}
        summary["model"] = str(args.model)
        if "rtl" in report:
            summary.update({f"rtl_{k}": v for k, v in report["rtl"].items()
                            if k in ("config", "accuracy_rtl", "bit_exact", "clocks_per_step")})
        path = rep.write_report(args.plot, title=f"spikeforge eval: {args.model.name}",
                                summary=summary, energy=report["energy"], figures=figures)
        report["report"] = str(path)


def cmd_import_nir(args) -> int:
    import numpy as np
    import torch

    from .golden.integer import Format
    from .golden.modelfile import save_model
    from .golden.nir import fidelity, import_nir, random_input
    from .golden.nirgraph import NirError

    _check_out(args.out, "--out")
    fmt = Format(w_bits=args.w_bits) if args.w_bits is not None else None
    options = {"input_kind": args.input_kind, "dt": args.dt, "reset": args.reset,
               "framework": args.framework}
    if args.check_against:
        from .golden.agreement import import_options

        options = {**import_options(args.check_against),
                   **{k: v for k, v in options.items() if v is not None}}
    imported = import_nir(args.file, fmt=fmt, **options)
    check = _check_against(args, imported, fmt, options) if args.check_against else None
    if check is not None:
        imported = check.pop("imported")
    reference = None
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as data:
                if "input" not in data:
                    raise NirError(f"--inputs {args.inputs}: no 'input' array (shape [T, B, "
                                   f"{imported.net.input_size}])")
                x = torch.from_numpy(np.asarray(data["input"])).to(torch.int64)
                if x.dim() != 3 or not x.shape[0] or not x.shape[1]:
                    raise UsageError(f"--inputs {args.inputs}: 'input' has shape "
                                     f"{list(x.shape)}, not [T, B, {imported.net.input_size}] "
                                     f"with T, B >= 1")
                if "reference" in data:
                    reference = torch.from_numpy(np.asarray(data["reference"]))
        except (OSError, ValueError) as exc:
            if isinstance(exc, NirError):
                raise
            raise UsageError(f"--inputs {args.inputs}: cannot read it as .npz ({exc})") from exc
    else:
        x = random_input(imported.net, args.steps, args.samples, seed=args.seed)
    fid = fidelity(imported, x, reference, progress=_progress(args))
    meta = {"nir": {**imported.meta, "file": str(args.file)}}
    save_model(args.out, imported.net, meta)
    result = {"model": str(args.out), "layers": [
        {"name": la.name, "size": la.size, "spiking": la.spiking, "reset": la.reset,
         "nir_node": imported.meta["nir_nodes"][la.name],
         "scale": imported.meta["scales"][la.name]}
        for la in imported.net.layers],
        "conventions": imported.meta["conventions"],
        **({"agreement": check} if check is not None else {}),
        "inputs": str(args.inputs) if args.inputs else "random", "fidelity": fid}

    def lines(r):
        yield f"saved {r['model']} ({len(r['layers'])} layers)"
        for note in r["conventions"]:
            yield f"  convention: {note}"
        for la in r["layers"]:
            scale = la["scale"]
            scale = f"{scale:.4g}" if isinstance(scale, float) \
                else f"{scale[0]:.4g}..{scale[1]:.4g} (per neuron or channel)"
            yield (f"  {la['name']}: {la['nir_node']} x{la['size']}, scale {scale}, "
                   f"reset {la['reset']}")
        f = r["fidelity"]
        yield (f"integer model vs NIR dynamics on {f['samples']} {r['inputs']} inputs "
               f"x {f['steps']} steps:")
        for name, v in f["layers"].items():
            agree = f"spike agreement {v['spike_agreement']:.4f}, " \
                if "spike_agreement" in v else ""
            rel = v["membrane_relative_error"]
            yield (f"  {name}: {agree}membrane relative error "
                   f"{'n/a' if rel is None else format(rel, '.4f')}")
        if "reference_agreement" in f:
            yield f"  against the reference output: {f['reference_agreement']}"
        if "agreement" in r:
            a = r["agreement"]
            yield (f"against {a['framework']}'s own import on {a['samples']} synthetic samples "
                   f"x {a['steps']} steps ({a['framework_spikes']:.0f} output spikes):")
            for model in ("integer", "float"):
                m = a[model]
                yield (f"  {model}: class {m['class_agreement']:.4f}, output spikes per step "
                       f"{m['step_agreement']:.4f}, per sample {m['count_agreement']:.4f}")

    _emit(result, args.json, lines)
    return EXIT_OK


def _check_against(args, imported, fmt, options) -> dict:
    """Run the file in ``args.check_against``'s own NIR import on synthetic inputs and
    compare (golden/agreement.py); an input with event counts above 1 re-imports the
    model with an int input (unless --input-kind says otherwise)."""
    from tqdm import tqdm

    from .golden.agreement import agreement, run_framework_chunked, synthetic_inputs
    from .golden.nir import import_nir

    shape = tuple(imported.float_net.input_shape)
    steps = args.check_steps or (300 if shape == (2, 34, 34) else 256)
    x = synthetic_inputs(shape, args.check_samples, steps, seed=args.seed)
    if int(x.max()) > 1 and imported.net.input_kind == "spike" and args.input_kind is None:
        imported = import_nir(args.file, fmt=fmt, **{**options, "input_kind": "int"})
    try:
        with tqdm(total=len(x), desc=f"{args.check_against} run", unit="sample",
                  disable=not _progress(args), leave=False) as bar:
            reference = run_framework_chunked(args.check_against, args.file, x,
                                              dt=imported.float_net.dt,
                                              progress=lambda done: bar.update(done - bar.n))
    except ImportError as exc:
        raise UsageError(f"--check-against {args.check_against}: it is not installed "
                         f"({exc}); pip install {args.check_against}") from exc
    except RuntimeError as exc:
        raise UsageError(f"--check-against {args.check_against}: {exc}") from exc
    return {"framework": args.check_against, "imported": imported,
            **agreement(imported, reference, x)}


def cmd_export_nir(args) -> int:
    from .golden.modelfile import load_model
    from .golden.nir import export_nir

    _check_out(args.file, "")
    net, _ = load_model(args.model)
    notes = export_nir(net, args.file, dt=args.dt)
    result = {"file": str(args.file), "layers": [la.name for la in net.layers], "notes": notes}
    _emit(result, args.json, lambda r: [f"wrote {r['file']}", *r["notes"]])
    return EXIT_OK


def cmd_experiment(args) -> int:
    from .golden import experiments

    result = experiments.run(args.name, progress=_progress(args) and not args.json or args.progress,
                             **{k: getattr(args, k) for k in experiments.CLI_OPTIONS})
    if args.plot and args.plot.suffix.lower() == ".png":
        experiments.plot(result, args.plot)
        result["plot"] = str(args.plot)
    elif args.plot:
        result["report"] = str(experiments.report(result, args.plot))
        result["plot"] = str(args.plot)
    _emit(result, args.json, experiments.describe)
    return EXIT_OK


def cmd_rtl(args) -> int:
    from .sim.rtl import REFERENCE_CONFIGS, write

    names = list(REFERENCE_CONFIGS) if args.config == "all" else [args.config]
    paths = write(names, args.out, progress=_progress(args))
    result = {"files": [str(p) for p in paths], "configs": names}
    _emit(result, args.json, lambda r: [f"wrote {p}" for p in r["files"]])
    return EXIT_OK


def cmd_sim_board(args) -> int:
    import signal

    from .sim.simboard import SimBoard

    board = SimBoard(args.config, port=args.port, uart=args.uart)
    if not args.quiet:
        print(f"sim-board: building / starting the {args.config!r} board "
              f"({'UART' if args.uart else 'byte stream'})", file=sys.stderr)
    board.start()

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"LISTENING {board.port}", flush=True)  # the harness' line, for scripts
        if not args.quiet:
            print(f"sim-board: serving {board.url} (Ctrl-C stops)", file=sys.stderr)
        board.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
    return EXIT_OK


def cmd_boards(args) -> int:
    from .boards.defs import BOARDS, capacity

    result = {"boards": [{**capacity(b), "description": b.description, "baud": b.baud,
                          "transport": b.transport} for b in BOARDS.values()]}

    def lines(r):
        yield (f"{'board':<15} {'device':<10} {'P':>3} {'neurons':>8} {'synapses':>9} "
               f"{'SSM state':>9} {'target':>8}")
        for b in r["boards"]:
            yield (f"{b['board']:<15} {b['device']:<10} {b['lanes']:>3} {b['neurons']:>8} "
                   f"{b['synapses']:>9} {b['ssm_state']:>9} {b['target_mhz']:>5.0f} MHz")

    _emit(result, args.json, lines)
    return EXIT_OK


def cmd_build(args) -> int:
    from .boards.build import build, program
    from .fit import preflight

    board, config, out = preflight(args)  # the fit check and the tools, then the folder
    quiet = args.quiet and not args.progress
    report = build(board, top=args.top, config=config, model=args.model, out=out,
                   seed=args.seed, progress=(lambda msg: None) if quiet else
                   (lambda msg: print(msg, file=sys.stderr, flush=True)))
    if args.program:  # (preflight refused --program on a board without a bitstream)
        program(Path(report["bitstream"]), board)
        report["programmed"] = True
    report.pop("bels", None)

    def lines(r):
        yield f"{r['board']} ({r['top']} top, P={r['config']['P']}): {r['build_dir']}"
        if r["bitstream"] is None:
            yield f"  vendor project files: {r['vendor_project']} ({r['note']})"
            return
        for name, u in r["utilization"].items():
            yield f"  {name:<6} {u['used']:>6} / {u['available']}"
        for clock, f in r["fmax_mhz"].items():
            yield f"  fmax {clock}: {f:.2f} MHz (target {r['target_mhz']} MHz)"
        for path in r.get("critical_paths", [])[:1]:
            yield (f"  critical path: {path['delay_ns']:.2f} ns, {path['logic_levels']} "
                   f"logic levels, {path['start']} -> {path['end']}")
            if path["sources"]:
                yield f"    through {', '.join(path['sources'][:6])}"
        yield f"  timing met: {r['timing_met']}; bitstream: {r['bitstream']}"

    _emit(report, args.json, lines)
    return EXIT_OK
