"""Data for any model: the ``.npz`` data file, loading a data set (an ``.npz`` file
or binned events), and evaluation of a model on such data.

The event formats and their binning are in :mod:`spikeforge.golden.events`.

The ``.npz`` data file
----------------------
An ``.npz`` archive (``numpy.savez`` / ``savez_compressed``) with exactly these arrays:

* ``inputs`` ``[N, T, ...]``: ``N`` samples of ``T`` time steps; the trailing
  dimensions hold one step's values (``[C, H, W]`` frames, ``[C]`` channels, ...).
  Integers, or floats / bools whose every value is an integer (a non-integer
  value is refused naming the index of the first one).
* ``labels`` ``[N]`` (optional): integer class indices ``0, 1, ...``.

Nothing is unpickled (``allow_pickle=False``); any other array in the archive is
refused, so that a misnamed ``labels`` is not silently ignored.

Into a model (:func:`model_inputs`)
-----------------------------------
``inputs [N, T, ...]`` are flattened over the trailing dimensions in C order
(``[C, H, W]`` -> index ``(c * H + y) * W + x``, as ``torch.flatten`` and NIR's
Flatten do) to the model's ``input_size`` and transposed to ``[T, N,
input_size]``.  Values must lie in the model's input range (0/1 for ``spike``
inputs, signed ``in_bits`` for ``int``) unless ``clip`` clamps them into it (for
a spike model: any nonzero count in a bin is one spike).

Readout (:func:`readout_rule`)
------------------------------
The decision rule of :func:`~spikeforge.golden.quantize.predict`, named by the
model file's meta key ``readout``: ``sum`` (argmax of the output layer's outputs
summed over the steps: the spike count of a spiking layer, as the NIR paper's
platforms score), ``last`` (argmax of the last step's: the final membrane of an
LI layer) or ``max`` (argmax of the largest value over the steps).  Without the
key: ``sum`` when the output layer spikes, else ``last``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .events import (
    NMNIST_SIZE,
    SHD_CHANNELS,
    DataError,
    _bar,
    bin_events,
    read_nmnist,
    read_nmnist_folder,
    read_shd,
)

__all__ = [
    "DataError",
    "as_integer_tensor",
    "check_range",
    "load_npz",
    "save_npz",
    "Data",
    "load_data",
    "is_event_data",
    "model_inputs",
    "readout_rule",
    "evaluate",
]

NPZ_ARRAYS = ("inputs", "labels")
_INT64_LIMIT = 2.0 ** 63


# -------------------------------------------------------------- integer values
def as_integer_tensor(x, what: str = "inputs", *, error: type[Exception] = ValueError
                      ) -> torch.Tensor:
    """``x`` (a tensor, numpy array or nested list) as an int64 CPU tensor.

    Integer and bool values are taken as they are; float values must all be
    integers (snnTorch's ``spikegen`` hands out float 0.0/1.0): the first
    non-integer one (row-major order), NaN or infinity is refused as
    ``error(f"{what}[3, 0, 17] = 0.5 is not an integer")``, a value beyond int64
    as ``... does not fit int64``.  Complex, object or text arrays are refused too.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.is_complex():
            raise error(f"{what} must be real numbers, not {t.dtype}")
    else:
        try:
            a = np.asarray(x)
        except ValueError as exc:  # ragged nested lists
            raise error(f"{what} is not a rectangular array of numbers ({exc})") from None
        if a.dtype.kind not in "biuf":
            raise error(f"{what} must be integers (or floats / bools holding integers), "
                        f"not {a.dtype}")
        if a.dtype.kind == "u" and a.size and int(a.max()) >= _INT64_LIMIT:
            where = np.unravel_index(int(np.argmax(a >= _INT64_LIMIT)), a.shape)
            raise error(f"{what}{_index(where)} = {a[where]} does not fit int64")
        a = np.asarray(a, dtype=np.float64 if a.dtype.kind == "f" else np.int64)
        if not (a.flags.c_contiguous and a.flags.writeable):
            a = a.copy()
        t = torch.from_numpy(a)
    if not t.is_floating_point():
        return t.to(torch.int64)
    return _float_to_int(t, what, error)


def _float_to_int(t: torch.Tensor, what: str, error) -> torch.Tensor:
    wide = t.to(torch.float64)
    finite = torch.isfinite(wide)
    bad = ~finite | (wide != torch.round(wide))
    if bool(bad.any()):
        where = _first(bad)
        raise error(f"{what}{_index(where)} = {float(wide[where])!r} is not an integer")
    big = wide.abs() >= _INT64_LIMIT
    if bool(big.any()):
        where = _first(big)
        raise error(f"{what}{_index(where)} = {float(wide[where])!r} does not fit int64")
    return wide.to(torch.int64)


def check_range(x: torch.Tensor, lo: int, hi: int, what: str = "inputs", *,
                kind: str = "", error: type[Exception] = ValueError) -> None:
    """Refuse the first value of ``x`` (row-major) outside ``[lo, hi]`` as
    ``error(f"{what}[2, 0, 5] = 7 is outside {kind}[0, 1]")``."""
    bad = (x < lo) | (x > hi)
    if bool(bad.any()):
        where = _first(bad)
        raise error(f"{what}{_index(where)} = {int(x[where])} is outside {kind}[{lo}, {hi}]")


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    flat = int(torch.argmax(mask.reshape(-1).to(torch.uint8)))
    return tuple(int(i) for i in np.unravel_index(flat, tuple(mask.shape)))


def _index(where: tuple[int, ...]) -> str:
    return f"[{', '.join(str(i) for i in where)}]" if where else ""


# ----------------------------------------------------------------- .npz files
def load_npz(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(inputs, labels or None)`` from the ``.npz`` data file ``path`` (module
    docstring), as int64 tensors ``[N, T, ...]`` and ``[N]``.

    Any problem raises :class:`DataError` naming the file: missing, not an
    ``.npz`` archive, pickled objects, no ``inputs``, another array, an ``inputs``
    with fewer than 2 dimensions or no samples or steps, a non-integer value
    (with its index), ``labels`` not ``[N]`` or not class indices."""
    name = os.fspath(path)
    _check_archive(name)
    try:
        with np.load(name, allow_pickle=False) as archive:
            arrays = {key: _array(archive, key, name) for key in archive.files}
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ValueError
        raise DataError(f"{name}: not a readable .npz file ({exc})") from exc
    return _check_arrays(arrays, name)


def _check_archive(name: str) -> None:
    try:
        with open(name, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise DataError(f"{name}: no such data file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not an .npz file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{name}: a single .npy array, not an .npz archive (write "
                        f"numpy.savez(path, inputs=..., labels=...))")
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise DataError(f"{name}: not an .npz file (no zip archive signature)")


def _array(archive, key: str, name: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{name}: {key!r} holds pickled Python objects, which are not "
                            f"loaded; store a numeric array") from None
        raise


def _check_arrays(arrays: dict, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    extra = sorted(k for k in arrays if k not in NPZ_ARRAYS)
    if "inputs" not in arrays:
        found = ", ".join(repr(k) for k in sorted(arrays)) or "nothing"
        raise DataError(f"{name}: no 'inputs' array (found {found}); a data file holds "
                        f"'inputs' [N, T, ...] and optionally 'labels' [N]")
    if extra:
        raise DataError(f"{name}: unexpected array {extra[0]!r}; a data file holds only "
                        f"'inputs' and optionally 'labels'")
    shape = tuple(arrays["inputs"].shape)
    if len(shape) < 2 or 0 in shape[:2]:
        raise DataError(f"{name}: 'inputs' has shape {list(shape)}; expected [N, T, ...] "
                        f"with N >= 1 samples and T >= 1 steps")
    try:
        inputs = as_integer_tensor(arrays["inputs"], "inputs", error=DataError)
        labels = None
        if "labels" in arrays:
            labels = as_integer_tensor(arrays["labels"], "labels", error=DataError)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    if labels is not None:
        _check_labels(labels, shape[0], name)
    return inputs, labels


def _check_labels(labels: torch.Tensor, samples: int, name: str) -> None:
    if labels.dim() != 1 or labels.shape[0] != samples:
        raise DataError(f"{name}: 'labels' has shape {list(labels.shape)}; expected "
                        f"[{samples}] (one per sample of 'inputs')")
    if labels.numel() and int(labels.min()) < 0:
        i = int(torch.argmax((labels < 0).to(torch.uint8)))
        raise DataError(f"{name}: labels[{i}] = {int(labels[i])} is not a class index "
                        f"(0, 1, ...)")


def save_npz(path: str | os.PathLike, inputs, labels=None) -> None:
    """Write ``inputs`` ``[N, T, ...]`` (and ``labels`` ``[N]``) as an ``.npz`` data
    file (compressed), atomically: checked first (as :func:`load_npz` checks a
    file), then written to a temporary file beside ``path`` and moved over it, so
    a failure leaves no half-written file."""
    name = os.fspath(path)
    try:
        arrays = {"inputs": as_integer_tensor(inputs, "inputs", error=DataError).numpy()}
        if labels is not None:
            arrays["labels"] = as_integer_tensor(labels, "labels", error=DataError).numpy()
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    _check_arrays(arrays, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    _write_atomic(name, buffer.getvalue())


def _write_atomic(name: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(name)}.", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(name)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- load_data
@dataclass
class Data:
    """A data set: ``inputs`` int64 ``[N, T, ...]``, ``labels`` int64 ``[N]`` or
    None, ``info`` (JSON-able: the format, and for events the binning and the
    number of events read and dropped outside the window)."""

    inputs: torch.Tensor
    labels: torch.Tensor | None
    info: dict

    def head(self, limit: int | None) -> Data:
        """The first ``limit`` samples (all with None)."""
        if limit is None:
            return self
        labels = None if self.labels is None else self.labels[:limit]
        return Data(self.inputs[:limit], labels, {**self.info, "samples": min(
            limit, int(self.inputs.shape[0]))})


def is_event_data(path: str | os.PathLike) -> bool:
    """True for what :func:`load_data` bins (an N-MNIST ``.bin`` file or folder, an
    SHD ``.h5``/``.hdf5`` file), False otherwise (an ``.npz`` data file, ...)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in (".bin", ".h5", ".hdf5")


def load_data(path: str | os.PathLike, *, bins: int | None = None,
              duration: int | None = None, t0: int | None = None,
              limit: int | None = None, progress: bool = False) -> Data:
    """Read a data set: an ``.npz`` data file (:func:`load_npz`), or events binned
    into ``bins`` frames (:func:`~spikeforge.golden.events.bin_events` with
    ``duration``, ``t0``): an N-MNIST ``.bin`` file (one unlabelled sample,
    ``[1, T, 2, 34, 34]``) or split folder
    (:func:`~spikeforge.golden.events.read_nmnist_folder`, labelled), or an SHD
    ``.h5``/``.hdf5`` file (``[N, T, 700]``, labelled).  ``limit``: only the first
    samples (events beyond them are read, not binned).  Errors are
    :class:`DataError` naming the file."""
    p = Path(path)
    if not is_event_data(p):
        if p.suffix.lower() != ".npz" and p.exists():
            raise DataError(f"{p}: unknown data format (expected an .npz data file, an "
                            f"N-MNIST .bin file or folder, or an SHD .h5 file; bin other "
                            f"events with bin_events and write them with save_npz)")
        if bins is not None or duration is not None or t0 is not None:
            raise DataError(f"{p}: bins, duration and t0 are for event files; an .npz data "
                            f"file holds frames already")
        inputs, labels = load_npz(p)
        return Data(inputs, labels, {"format": "npz", "samples": int(inputs.shape[0])}
                    ).head(limit)
    if bins is None:
        raise DataError(f"{p}: event data needs a number of time bins")
    if p.is_dir():
        events, labels, names = read_nmnist_folder(p, progress=progress)
        fmt, size = "n-mnist", NMNIST_SIZE
    elif p.suffix.lower() == ".bin":
        events, labels, names = [read_nmnist(p)], None, [p]
        fmt, size = "n-mnist", NMNIST_SIZE
    else:
        events, labels = read_shd(p)
        names = [f"{p}: sample {i}" for i in range(len(events))]
        fmt, size = "shd", (SHD_CHANNELS,)
    if limit is not None:
        events, names = events[:limit], names[:limit]
        labels = None if labels is None else labels[:limit]
    frames = []
    for where, ev in _bar(list(zip(names, events, strict=True)), "binning", progress):
        try:
            frames.append(bin_events(ev, bins, size, duration=duration, t0=t0))
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    inputs = torch.from_numpy(np.stack(frames)) if frames else None
    if inputs is None:
        raise DataError(f"{p}: no samples")
    total = sum(len(ev) for ev in events)
    info = {"format": fmt, "samples": len(frames), "bins": bins,
            "duration_us": duration if duration is not None else "span",
            "t0_us": t0 if t0 is not None else "first event", "events": total,
            "events_outside_window": total - int(inputs.sum())}
    return Data(inputs, None if labels is None else torch.from_numpy(labels), info)


# ----------------------------------------------------------- into a model
def model_inputs(net, inputs: torch.Tensor, *, clip: bool = False,
                 source: str = "inputs") -> torch.Tensor:
    """``inputs`` ``[N, T, ...]`` as the model's ``[T, N, input_size]`` int64 input
    (module docstring).  Raises :class:`~spikeforge.golden.integer.NetworkError`
    naming ``source`` when the values per step are not ``input_size`` or (without
    ``clip``) a value lies outside the model's input range."""
    from .integer import NetworkError

    x = as_integer_tensor(inputs, "inputs", error=NetworkError)
    shape = list(x.shape)
    if len(shape) < 2:
        raise NetworkError(f"{source}: inputs of shape {shape} are not [N, T, ...]")
    per_step = int(np.prod(shape[2:], dtype=np.int64))
    if per_step != net.input_size:
        raise NetworkError(f"{source}: inputs of shape {shape} have {per_step} values per "
                           f"step ({shape[2:]} flattened), but the model takes "
                           f"{net.input_size} (input_size)")
    spike = net.input_kind == "spike"
    lo, hi = net.input_range()
    if clip:
        x = x.clamp(lo, hi)
    elif x.numel() and (int(x.min()) < lo or int(x.max()) > hi):
        kind = "0/1 spikes (input_kind 'spike')" if spike else \
            f"signed {net.fmt.in_bits}-bit integers (input_kind 'int')"
        advice = "clip (--clip) presents any nonzero count as one spike, or use a model " \
            "with int inputs" if spike else "clip (--clip) clamps them into range"
        raise NetworkError(f"{source}: input values lie in [{int(x.min())}, {int(x.max())}] "
                           f"(largest {int(x.max())}), but the model takes {kind} in "
                           f"[{lo}, {hi}]: {advice}")
    return x.reshape(shape[0], shape[1], -1).transpose(0, 1).contiguous()


def readout_rule(net, meta: dict) -> str:
    """The model's decision rule (module docstring): ``meta["readout"]`` when given
    (one of :data:`~spikeforge.golden.quantize.READOUTS`), else ``sum`` when the
    output layer spikes and ``last`` otherwise.  A ``readout`` that is not one of
    them raises :class:`~spikeforge.golden.modelfile.ModelFileError`."""
    from .modelfile import ModelFileError
    from .quantize import READOUTS

    if "readout" in meta:
        if meta["readout"] not in READOUTS:
            raise ModelFileError(f"the meta's readout {meta['readout']!r} is not one of "
                                 f"{', '.join(READOUTS)}")
        return meta["readout"]
    out = net.layer(net.output)
    return "sum" if getattr(out, "spiking", False) else "last"


def evaluate(net, x: torch.Tensor, labels: torch.Tensor | None = None, *, readout: str,
             batch: int = 256, progress: bool = False) -> dict:
    """Run ``x`` (``[T, N, input_size]``) through the golden model in batches.

    Returns ``samples``, ``timesteps``, ``readout``, ``predictions`` (per class, how
    many samples were decided for it), with ``labels`` ``accuracy``; ``spikes`` per
    spiking layer (``total`` and ``per_sample``), ``synops_per_sample`` and the
    energy estimate (:mod:`.energy`) from the golden counts."""
    from .energy import add_counts, counts_from_trace, estimate
    from .quantize import predict

    steps, samples = int(x.shape[0]), int(x.shape[1])
    if labels is not None and tuple(labels.shape) != (samples,):
        raise DataError(f"labels of shape {list(labels.shape)} do not match {samples} samples")
    preds, counts, synops = [], None, 0
    for start in _bar(range(0, samples, batch), "eval", progress):
        xb = x[:, start:start + batch]
        trace = net.run(xb)
        preds.append(predict(trace.outputs[net.output], readout))
        counts = add_counts(counts, counts_from_trace(net, xb, trace))
        synops += int(trace.synops.sum())
    pred = torch.cat(preds)
    classes = net.layer(net.output).out_size
    report = {"samples": samples, "timesteps": steps, "readout": readout,
              "predictions": torch.bincount(pred, minlength=classes).tolist(),
              "spikes": {name: {"total": c["spikes"], "per_sample": c["spikes"] / samples}
                         for name, c in counts["layers"].items()
                         if getattr(net.layer(name), "spiking", False)},
              "synops_per_sample": synops / samples,
              "energy": estimate(net, counts)}
    if labels is not None:
        report["accuracy"] = float((pred == labels).double().mean())
    return report
