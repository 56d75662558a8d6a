"""Events for any model: readers for the event formats users have on disk and
binning of events into integer frames (:mod:`spikeforge.golden.data` loads them
as a data set and evaluates a model on it).

Event formats
-------------
Events are tonic-style structured numpy arrays with integer fields ``x``, ``t``
and optionally ``y`` (2-D sensors) and ``p`` (polarity); ``t`` in microseconds.

* N-MNIST's binary files (Orchard et al. 2015; the layout of the dataset's
  ``eventvision.py`` and tonic's ``read_mnist_file``): 5 bytes per event, byte 0
  ``x``, byte 1 ``y``, bit 7 of byte 2 the polarity, and the timestamp
  ``(byte2 & 0x7F) << 16 | byte3 << 8 | byte4`` in microseconds.  A record with
  ``y == 240`` is a timestamp-overflow marker, not an event: it adds ``2**13`` to
  the timestamps of every record after it (as both reference readers do; an
  N-MNIST sample lasts about 300 ms, well inside the 23-bit timestamp, so the
  dataset's files hold none).  Sensor 34 x 34, 2 polarities.  The dataset ships
  as folders ``Test/<label>/<name>.bin``; :func:`read_nmnist_folder` reads one.
* Tonic-style event arrays saved with ``numpy.save`` (``.npy``): fields ``x``,
  ``y``, ``t``, ``p``; or ``x``, ``t``, ``p`` / ``x``, ``t`` for 1-D (audio-like)
  sensors.
* SHD's HDF5 files (the Spiking Heidelberg Digits): ragged ``spikes/times``
  (seconds, float) and ``spikes/units`` (channel ``0..699``), and ``labels``.
  Times become integer microseconds rounded to the nearest (tonic truncates; the
  two differ by at most 1 us).

Binning (:func:`bin_events`)
----------------------------
``T`` bins cover the window ``[t0, t0 + duration)`` (integer microseconds), by
default ``t0`` = the sample's first event and ``duration`` = its span
``t_last - t0 + 1``, so that every event of the sample falls in the window.  An
event at time ``t`` in the window goes to bin::

    bin = floor((t - t0) * T / duration)          (exact integer arithmetic)

so the bins are half-open and of equal width ``duration / T``; events outside the
window are dropped (counted by :func:`~spikeforge.golden.data.load_data`).  A 2-D
event adds 1 to frame ``[bin, p, y, x]`` of ``[T, P, H, W]`` (polarity is the
channel; without a ``p`` field ``P = 1``); a 1-D event adds 1 to ``[bin, x]`` of
``[T, C]`` (a 1-D sensor has one polarity: events whose ``p`` takes several values
are refused).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "NMNIST_SIZE",
    "SHD_CHANNELS",
    "read_nmnist",
    "read_nmnist_folder",
    "write_nmnist",
    "read_events_npy",
    "read_shd",
    "bin_events",
]

NMNIST_SIZE = (34, 34)
"""N-MNIST's sensor, ``(H, W)``; 2 polarities."""
SHD_CHANNELS = 700
"""SHD's cochlea channels (``spikes/units`` ``0..699``)."""
EVENT_FIELDS = ("x", "y", "t", "p")
_NMNIST_OVERFLOW_Y = 240
_NMNIST_OVERFLOW_STEP = 2 ** 13


class DataError(ValueError):
    """A data file, or events, that break the formats of this module or of
    :mod:`spikeforge.golden.data`."""


# --------------------------------------------------------------- event readers
def _event_array(columns: dict[str, np.ndarray]) -> np.ndarray:
    names = [f for f in EVENT_FIELDS if f in columns]
    events = np.empty(len(columns["t"]), dtype=[(f, np.int64) for f in names])
    for f in names:
        events[f] = columns[f]
    return events


def read_nmnist(path: str | os.PathLike) -> np.ndarray:
    """The events of one N-MNIST binary file (module docstring), as a structured
    array with int64 fields ``x``, ``y``, ``t`` (us), ``p`` (0/1).

    A file whose length is not a multiple of 5 bytes is refused (:class:`DataError`)."""
    name = os.fspath(path)
    try:
        raw = np.fromfile(name, dtype=np.uint8).astype(np.int64)
    except FileNotFoundError:
        raise DataError(f"{name}: no such N-MNIST file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) % 5:
        raise DataError(f"{name}: {len(raw)} bytes is not a whole number of 5-byte N-MNIST "
                        f"events (truncated?)")
    x, y = raw[0::5], raw[1::5]
    p = raw[2::5] >> 7
    t = (raw[2::5] & 0x7F) << 16 | raw[3::5] << 8 | raw[4::5]
    overflow = y == _NMNIST_OVERFLOW_Y
    t = t + np.cumsum(overflow) * _NMNIST_OVERFLOW_STEP
    keep = ~overflow
    return _event_array({"x": x[keep], "y": y[keep], "t": t[keep], "p": p[keep]})


def write_nmnist(path: str | os.PathLike, events) -> None:
    """Write ``events`` (fields ``x``, ``y``, ``t``, ``p``) as one N-MNIST binary file
    (module docstring), in their order: :func:`read_nmnist` reads them back.  An
    event that the format cannot hold is refused naming its index: ``x`` or ``y``
    outside ``0..239`` (``y == 240`` marks an overflow), ``p`` not 0/1, ``t``
    outside ``0..2**23 - 1`` microseconds (no overflow records are written)."""
    events = check_events(events)
    if "y" not in events.dtype.names or "p" not in events.dtype.names:
        raise DataError(f"N-MNIST events need fields x, y, t, p; found {events.dtype.names}")
    for field, limit in (("x", _NMNIST_OVERFLOW_Y), ("y", _NMNIST_OVERFLOW_Y), ("p", 2),
                         ("t", 1 << 23)):
        _check_range(events[field], field, limit)
    t = events["t"]
    raw = np.stack([events["x"], events["y"], events["p"] << 7 | t >> 16, t >> 8 & 0xFF,
                    t & 0xFF], axis=1).astype(np.uint8)
    Path(path).write_bytes(raw.tobytes())


def read_nmnist_folder(path: str | os.PathLike, *, progress: bool = False
                       ) -> tuple[list[np.ndarray], np.ndarray, list[Path]]:
    """Every sample of an N-MNIST split folder (``<label>/<name>.bin``, as the
    dataset's ``Test/`` and ``Train/`` ship): ``(events, labels, files)`` in order of
    label, then file name.  A folder holding ``.bin`` files whose name is not an
    integer label, or no sample at all, is refused."""
    root = Path(path)
    files: list[tuple[int, Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        bins = sorted(folder.glob("*.bin"))
        if bins and not folder.name.isdigit():
            raise DataError(f"{folder}: holds .bin files but is not named by a class label "
                            f"(N-MNIST's folders are 0..9)")
        files += [(int(folder.name), f) for f in bins]
    if not files:
        raise DataError(f"{root}: no N-MNIST samples (expected <label>/<name>.bin files, "
                        f"as in N-MNIST's Test/ and Train/ folders)")
    files.sort(key=lambda lf: (lf[0], lf[1].name))
    events = [read_nmnist(f) for _, f in _bar(files, "reading", progress)]
    return events, np.array([label for label, _ in files], dtype=np.int64), \
        [f for _, f in files]


def read_events_npy(path: str | os.PathLike) -> np.ndarray:
    """A tonic-style structured event array saved with ``numpy.save`` (module
    docstring), checked (:func:`check_events`) and returned with int64 fields."""
    name = os.fspath(path)
    try:
        events = np.load(name, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{name}: no such event file") from None
    except Exception as exc:  # ValueError (pickle, bad header), OSError
        raise DataError(f"{name}: not a readable .npy event array ({exc})") from exc
    if not isinstance(events, np.ndarray):
        raise DataError(f"{name}: an .npz archive, not an .npy event array")
    try:
        return check_events(events)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None


def check_events(events) -> np.ndarray:
    """``events`` as a 1-D structured array with int64 fields; refuses another
    array, missing ``x`` or ``t``, unknown fields and non-integer fields."""
    names = getattr(getattr(events, "dtype", None), "names", None)
    if not isinstance(events, np.ndarray) or names is None:
        kind = getattr(events, "dtype", type(events).__name__)
        raise DataError(f"not a structured event array ({kind} has no fields; tonic-style "
                        f"events have fields x, y, t, p)")
    unknown = [f for f in names if f not in EVENT_FIELDS]
    if unknown or "x" not in names or "t" not in names:
        raise DataError(f"events need fields 'x' and 't' (and 'y', 'p' where the sensor "
                        f"has them); found {tuple(names)}")
    if events.ndim != 1:
        raise DataError(f"events must be a 1-D array, not of shape {list(events.shape)}")
    for f in names:
        if events.dtype[f].kind not in "biu":
            raise DataError(f"field {f!r} has dtype {events.dtype[f]}; events need integer "
                            f"fields (t in integer microseconds)")
    return _event_array({f: events[f].astype(np.int64) for f in names})


def read_shd(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """``(events, labels)`` of an SHD HDF5 file (module docstring): per sample a
    structured array with int64 fields ``x`` (the unit) and ``t`` (us, rounded to
    the nearest).  A missing dataset, lengths that differ or a non-finite time are
    refused (:class:`DataError`)."""
    import h5py

    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataError(f"{name}: no such SHD file")
    try:
        f = h5py.File(name, "r")
    except OSError as exc:
        raise DataError(f"{name}: not a readable HDF5 file ({exc})") from None
    with f:
        times, units, labels = (_dataset(f, key, name) for key in
                                ("spikes/times", "spikes/units", "labels"))
        n = len(labels)
        if len(times) != n or len(units) != n:
            raise DataError(f"{name}: spikes/times ({len(times)}), spikes/units "
                            f"({len(units)}) and labels ({n}) differ in length")
        events = [_shd_sample(times[i], units[i], i, name) for i in range(n)]
        labels = np.asarray(labels[()])
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DataError(f"{name}: labels must be a 1-D integer array, not {labels.dtype} "
                        f"of shape {list(labels.shape)}")
    return events, labels.astype(np.int64)


def _dataset(f, key: str, name: str):
    import h5py

    node = f.get(key)
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{name}: no {key!r} dataset (SHD's layout: spikes/times, "
                        f"spikes/units, labels)")
    return node


def _shd_sample(times, units, i: int, name: str) -> np.ndarray:
    times, units = np.asarray(times), np.asarray(units)
    if times.shape != units.shape or times.ndim != 1:
        raise DataError(f"{name}: sample {i} has {times.size} spike times but {units.size} "
                        f"units")
    if units.dtype.kind not in "iu":
        raise DataError(f"{name}: spikes/units of sample {i} have dtype {units.dtype}; "
                        f"expected integer unit indices")
    seconds = times.astype(np.float64)
    bad = ~np.isfinite(seconds)
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(f"{name}: spikes/times[{i}][{j}] = {float(seconds[j])!r} is not a "
                        f"finite time")
    return _event_array({"x": units.astype(np.int64),
                         "t": np.rint(seconds * 1e6).astype(np.int64)})


# -------------------------------------------------------------------- binning
def bin_events(events, bins: int, size, *, duration: int | None = None,
               t0: int | None = None, polarities: int = 2) -> np.ndarray:
    """Count ``events`` into ``bins`` time bins (the rule in the module docstring).

    ``size``: ``(H, W)`` for 2-D events (fields ``x``, ``y``, ``t``[, ``p``]):
    returns int64 ``[bins, P, H, W]`` with ``P = polarities`` (1 without ``p``);
    ``(C,)`` for 1-D events (``x``, ``t``[, ``p``]): returns ``[bins, C]``.
    ``duration`` (>= 1) and ``t0`` in microseconds; by default the sample's span
    from its first event.  A coordinate or polarity outside the frame is refused
    naming the event's index."""
    events = check_events(events)
    size = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
    _check_binning(bins, size, duration, t0, polarities)
    channels = _check_coordinates(events, size, polarities)
    start, span = _window(events["t"], bins, t0, duration)
    e = events[(events["t"] >= start) & (events["t"] < start + span)]
    b = (e["t"] - start) * bins // span
    if len(size) == 2:
        c = e["p"] if "p" in e.dtype.names else np.zeros_like(b)
        flat = ((b * channels + c) * size[0] + e["y"]) * size[1] + e["x"]
        shape = (bins, channels, *size)
    else:
        flat, shape = b * size[0] + e["x"], (bins, size[0])
    return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.int64).reshape(shape)


def _check_coordinates(events: np.ndarray, size: tuple, polarities: int) -> int:
    """Check the fields against the frame; the number of channels."""
    names = events.dtype.names
    two_d = len(size) == 2
    if two_d != ("y" in names):
        raise DataError(f"events with fields {names} do not match a frame size {list(size)} "
                        f"({'(H, W) needs' if two_d else '(C,) is for events without'} "
                        f"a 'y' field)")
    channels = polarities if two_d and "p" in names else 1
    keys = [("x", size[-1])] + ([("y", size[0])] if two_d else [])
    if two_d and "p" in names:
        keys.append(("p", channels))
    elif "p" in names and len(np.unique(events["p"])) > 1:
        raise DataError(f"1-D events carry one polarity; 'p' takes the values "
                        f"{np.unique(events['p']).tolist()}: select one first")
    for field, limit in keys:
        _check_range(events[field], field, limit)
    return channels


def _window(t: np.ndarray, bins: int, t0, duration) -> tuple[int, int]:
    """``(t0, duration)``: as given, else from the first event and the span."""
    start = int(t0) if t0 is not None else int(t.min()) if len(t) else 0
    span = int(duration) if duration is not None else \
        max(1, int(t.max()) - start + 1 if len(t) else 1)
    if span > (2 ** 63 - 1) // bins:
        raise DataError(f"a window of {span} us in {bins} bins overflows int64 arithmetic")
    return start, span


def _check_binning(bins, size, duration, t0, polarities) -> None:
    def positive(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) \
            and value >= 1

    if not positive(bins):
        raise DataError(f"bins must be a positive integer, not {bins!r}")
    if duration is not None and not positive(duration):
        raise DataError(f"duration must be a positive integer (microseconds), not "
                        f"{duration!r}")
    if len(size) not in (1, 2) or min(size) < 1:
        raise DataError(f"size must be (H, W) or (C,) of positive integers, not {list(size)}")
    if not positive(polarities):
        raise DataError(f"polarities must be a positive integer, not {polarities!r}")
    if t0 is not None and not (isinstance(t0, (int, np.integer)) and not isinstance(t0, bool)):
        raise DataError(f"t0 must be an integer (microseconds), not {t0!r}")


def _check_range(values: np.ndarray, field: str, limit: int) -> None:
    bad = (values < 0) | (values >= limit)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"events[{i}]: {field} = {int(values[i])} is outside 0..{limit - 1}")


# ------------------------------------------------------------------- progress
def _bar(items, desc: str, progress: bool):
    """``items`` behind a progress bar shown with ``progress`` (also :mod:`.data`'s)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="sample", disable=not progress, leave=False)
