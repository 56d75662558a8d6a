"""``spikeforge data NAME``: write a data set for ``eval|run --data``.

``event-digits``: the bundled 8x8 digits seen by an emulated event camera making
N-MNIST's three saccades (:mod:`spikeforge.golden.dvs`, ``docs/data.md``),
binned into ``[N, T, 2, 34, 34]`` frames and written as an ``.npz`` data file
(:func:`spikeforge.golden.data.save_npz`), or with ``--format nmnist`` as an
N-MNIST split folder ``OUT/<label>/<index>.bin`` of the events themselves.
"""

from __future__ import annotations

import time
from pathlib import Path

from .commands import EXIT_OK, UsageError, _check_out, _emit, _progress

DATASETS = ("event-digits",)
FORMATS = ("npz", "nmnist")


def cmd_data(args) -> int:
    """Generate ``args.name`` into ``args.out`` (module docstring)."""
    if args.format == "npz":
        if args.out.suffix.lower() != ".npz":
            raise UsageError(f"--out {args.out}: an .npz data file needs a name ending in "
                             f".npz (or give --format nmnist for a folder)")
        _check_out(args.out, "--out")
    else:
        if args.bins is not None:
            raise UsageError("--bins is for --format npz; an N-MNIST folder holds the events "
                             "(bin them with eval --data FOLDER --bins T)")
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UsageError(f"--out {args.out}: exists and is not an empty folder (an "
                             f"N-MNIST split folder is written into a new or empty one)")
        if not args.out.parent.is_dir():
            raise UsageError(f"--out {args.out}: the directory {str(args.out.parent)!r} "
                             f"does not exist")
    from .golden import dvs

    options = {"threshold": args.threshold, "mismatch": args.mismatch, "seed": args.seed,
               "steps": args.steps, "limit": args.limit, "progress": _progress(args)}
    start = time.monotonic()
    if args.format == "npz":
        report = _write_npz(args.out, args.split, args.bins or dvs.DEFAULT_BINS, options)
    else:
        report = _write_nmnist(args.out, args.split, options)
    report.update(dataset=args.name, out=str(args.out), seconds=time.monotonic() - start)
    _emit(report, args.json, _lines)
    return EXIT_OK


def _write_npz(out: Path, split: str, bins: int, options: dict) -> dict:
    from .golden.data import save_npz
    from .golden.dvs import event_digits_frames

    inputs, labels, info = event_digits_frames(split, bins, **options)
    save_npz(out, inputs, labels)
    return {**info, "format": "npz", "shape": list(inputs.shape)}


def _write_nmnist(out: Path, split: str, options: dict) -> dict:
    import numpy as np

    from .golden.dvs import event_digits
    from .golden.events import write_nmnist

    events, labels = event_digits(split, **options)
    for i, (e, label) in enumerate(zip(events, labels, strict=True)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        write_nmnist(folder / f"{i:05d}.bin", e)
    counts = np.array([len(e) for e in events])
    total = int(counts.sum())
    return {"format": "nmnist", "split": split, "samples": len(events), "events": total,
            "events_per_sample": total / len(events) if len(events) else 0.0,
            "on_fraction": sum(int(e["p"].sum()) for e in events) / total if total else 0.0,
            "settings": {k: v for k, v in options.items() if k not in ("limit", "progress")}}


def _lines(r):
    shape = f"{' x '.join(str(s) for s in r['shape'])} frames" if "shape" in r else \
        f"{r['samples']} N-MNIST .bin files"
    yield (f"wrote {r['out']}: {r['dataset']} ({r['split']} split), {shape}, "
           f"{r['events_per_sample']:.0f} events per sample ({r['on_fraction']:.1%} ON), "
           f"in {r['seconds']:.1f} s")


def add_parser(sub, common, positive) -> None:
    """Declare ``data`` on the ``spikeforge`` subparsers ``sub``."""
    p = sub.add_parser("data", help="write a data set for eval|run --data (event-digits: the "
                                    "digits through an emulated event camera, N-MNIST's format)")
    p.add_argument("name", choices=DATASETS)
    p.add_argument("--out", type=Path, required=True,
                   help="FILE.npz (--format npz) or a new folder (--format nmnist)")
    p.add_argument("--format", choices=FORMATS, default="npz",
                   help="npz: binned frames [N, T, 2, 34, 34] and labels; nmnist: one N-MNIST "
                        ".bin file of events per sample in OUT/<label>/ [npz]")
    p.add_argument("--bins", type=positive, metavar="T",
                   help="time bins over the three saccades (npz) [9: 3 per saccade]")
    p.add_argument("--split", choices=("test", "train", "all"), default="test",
                   help="the digits task's split, or all 1797 images [test]")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="contrast threshold C, log-intensity units [0.2]")
    p.add_argument("--mismatch", type=float, default=0.1,
                   help="relative spread of the pixels' thresholds [0.1]")
    p.add_argument("--seed", type=int, default=0, help="the sensor's seed (its thresholds) [0]")
    p.add_argument("--steps", type=positive, default=16,
                   help="sub-steps of the path per saccade [16]")
    p.add_argument("--limit", type=positive, help="only the first N samples of the split")
    common(p)
    p.set_defaults(func=cmd_data)
