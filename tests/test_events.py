"""``spikeforge.golden.events``: the event readers (each on small files written here
in its format: N-MNIST's 5-byte records, tonic-style ``.npy`` arrays, SHD's HDF5
layout), binning, and ``load_data`` on event files."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import torch
from datakit import exactly
from spikeforge.golden.data import load_data
from spikeforge.golden.events import (
    NMNIST_SIZE,
    SHD_CHANNELS,
    DataError,
    bin_events,
    read_events_npy,
    read_nmnist,
    read_nmnist_folder,
    read_shd,
)


# ------------------------------------------------------------------ helpers
def nmnist_bytes(events) -> bytes:
    """N-MNIST's 5-byte records of ``(x, y, t, p)`` events, laid out by hand."""
    out = bytearray()
    for x, y, t, p in events:
        out += bytes([x, y, (p << 7) | (t >> 16) & 0x7F, (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


NMNIST_EVENTS = [(0, 0, 0, 1), (33, 5, 255, 0), (7, 33, 65_536, 1), (12, 20, 300_000, 0),
                 (1, 2, 8_388_607, 1)]  # the largest 23-bit timestamp


def event_array(rows, fields=("x", "y", "t", "p")) -> np.ndarray:
    a = np.zeros(len(rows), dtype=[(f, np.int64) for f in fields])
    for i, row in enumerate(rows):
        a[i] = tuple(row)
    return a


def write_shd(path, times, units, labels, *, time_dtype=np.float32, skip=()):
    """An HDF5 file in SHD's layout (ragged spikes/times, spikes/units; labels)."""
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        if "spikes/times" not in skip:
            d = spikes.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(time_dtype))
            for i, t in enumerate(times):
                d[i] = np.asarray(t, dtype=time_dtype)
        if "spikes/units" not in skip:
            d = spikes.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, u in enumerate(units):
                d[i] = np.asarray(u, dtype=np.uint16)
        if "labels" not in skip:
            f["labels"] = np.asarray(labels, dtype=np.uint8)


def naive_bins(rows, bins, size, *, t0, duration, channels):
    """Per event in Python integers: the bin rule of the module docstring."""
    frames = np.zeros((bins, channels, *size) if len(size) == 2 else (bins, *size), np.int64)
    for row in rows:
        x, y, t, p = row if len(size) == 2 else (row[0], None, row[1], None)
        if not t0 <= t < t0 + duration:
            continue
        b = (t - t0) * bins // duration
        if len(size) == 2:
            frames[b, p, y, x] += 1
        else:
            frames[b, x] += 1
    return frames


# ------------------------------------------------------------------ N-MNIST
def test_nmnist_file_reads_the_events_written(tmp_path):
    path = tmp_path / "00004.bin"
    path.write_bytes(nmnist_bytes(NMNIST_EVENTS))
    events = read_nmnist(path)
    assert events.dtype.names == ("x", "y", "t", "p")
    assert [tuple(int(v) for v in e) for e in events] == NMNIST_EVENTS


def test_nmnist_overflow_records_shift_later_timestamps(tmp_path):
    # y == 240 marks a timestamp overflow: +2**13 us for every later record.
    path = tmp_path / "o.bin"
    path.write_bytes(nmnist_bytes([(1, 1, 100, 0), (0, 240, 0, 0), (2, 2, 50, 1),
                                   (0, 240, 0, 0), (3, 3, 7, 0)]))
    got = [tuple(int(v) for v in e) for e in read_nmnist(path)]
    assert got == [(1, 1, 100, 0), (2, 2, 50 + 8192, 1), (3, 3, 7 + 2 * 8192, 0)]


def test_an_empty_nmnist_file_has_no_events(tmp_path):
    path = tmp_path / "e.bin"
    path.write_bytes(b"")
    assert len(read_nmnist(path)) == 0


@pytest.mark.parametrize("length", [1, 4, 12])
def test_a_truncated_nmnist_file_is_refused(tmp_path, length):
    path = tmp_path / "t.bin"
    path.write_bytes(nmnist_bytes(NMNIST_EVENTS)[:length])
    with pytest.raises(DataError, match=exactly(f"{path}: {length} bytes is not a whole number "
                                                f"of 5-byte N-MNIST events (truncated?)")):
        read_nmnist(path)


def test_a_missing_nmnist_file_is_refused(tmp_path):
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'x.bin'}: no such N-MNIST file")):
        read_nmnist(tmp_path / "x.bin")


def write_nmnist_split(root, samples):
    """``samples``: ``{label: {name: events}}`` as N-MNIST's Test/<label>/<name>.bin."""
    for label, files in samples.items():
        (root / str(label)).mkdir(parents=True)
        for name, events in files.items():
            (root / str(label) / name).write_bytes(nmnist_bytes(events))


def test_nmnist_folder_reads_labels_from_the_folders(tmp_path):
    root = tmp_path / "Test"
    write_nmnist_split(root, {3: {"00002.bin": [(1, 1, 5, 1)]},
                              0: {"00010.bin": [(2, 2, 9, 0)], "00001.bin": [(3, 3, 1, 1)]}})
    (root / "README.txt").write_text("not a sample")
    (root / "notes").mkdir()  # no .bin files: ignored
    events, labels, files = read_nmnist_folder(root)
    assert labels.tolist() == [0, 0, 3]
    assert [f.name for f in files] == ["00001.bin", "00010.bin", "00002.bin"]
    assert [e["x"].tolist() for e in events] == [[3], [2], [1]]


def test_nmnist_folder_errors(tmp_path):
    with pytest.raises(DataError, match=exactly(
            f"{tmp_path}: no N-MNIST samples (expected <label>/<name>.bin files, as in "
            f"N-MNIST's Test/ and Train/ folders)")):
        read_nmnist_folder(tmp_path)
    write_nmnist_split(tmp_path, {"seven": {"1.bin": []}})
    with pytest.raises(DataError, match=exactly(
            f"{tmp_path / 'seven'}: holds .bin files but is not named by a class label "
            f"(N-MNIST's folders are 0..9)")):
        read_nmnist_folder(tmp_path)


def test_load_data_bins_an_nmnist_folder(tmp_path):
    root = tmp_path / "Test"
    a = [(0, 0, 1000, 1), (33, 33, 1100, 0), (5, 6, 1999, 1), (5, 6, 2000, 1)]
    b = [(1, 2, 0, 0), (1, 2, 10, 0), (30, 4, 299_999, 1)]
    write_nmnist_split(root, {1: {"a.bin": a}, 7: {"b.bin": b}})
    data = load_data(root, bins=4)
    assert data.inputs.shape == (2, 4, 2, *NMNIST_SIZE) and data.inputs.dtype == torch.int64
    assert data.labels.tolist() == [1, 7]
    for got, rows in zip(data.inputs, (a, b), strict=True):
        t0 = min(r[2] for r in rows)
        span = max(r[2] for r in rows) - t0 + 1
        want = naive_bins(rows, 4, NMNIST_SIZE, t0=t0, duration=span, channels=2)
        assert got.tolist() == want.tolist()
    assert data.info == {"format": "n-mnist", "samples": 2, "bins": 4, "duration_us": "span",
                         "t0_us": "first event", "events": 7, "events_outside_window": 0}
    # A fixed window from t = 0: events at or after 2000 us fall outside it.
    fixed = load_data(root, bins=2, duration=2000, t0=0)
    assert fixed.info["events_outside_window"] == 2
    assert fixed.inputs[0, 0].sum() == 0 and fixed.inputs[0, 1].sum() == 3
    assert fixed.head(1).inputs.shape[0] == 1 and fixed.head(1).labels.tolist() == [1]
    first = load_data(root, bins=4, limit=1)
    assert first.labels.tolist() == [1] and first.inputs.tolist() == data.inputs[:1].tolist()
    assert first.info["samples"] == 1 and first.info["events"] == 4


def test_load_data_names_the_file_of_a_bad_event(tmp_path):
    root = tmp_path / "Test"
    write_nmnist_split(root, {2: {"x.bin": [(1, 1, 0, 0), (40, 1, 5, 0)]}})
    with pytest.raises(DataError, match=exactly(f"{root / '2' / 'x.bin'}: events[1]: x = 40 is "
                                                f"outside 0..33")):
        load_data(root, bins=2)


def test_load_data_one_nmnist_file_has_no_labels(tmp_path):
    path = tmp_path / "s.bin"
    path.write_bytes(nmnist_bytes(NMNIST_EVENTS[:4]))
    data = load_data(path, bins=3)
    assert data.labels is None and data.inputs.shape == (1, 3, 2, 34, 34)
    assert int(data.inputs.sum()) == 4


# ------------------------------------------------------- tonic-style .npy
@pytest.mark.parametrize("dtype", [
    [("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)],  # tonic's events_struct
    [("x", int), ("y", int), ("t", int), ("p", int)],
    [("t", int), ("x", int), ("p", int)],  # tonic's audio ordering
    [("x", np.uint16), ("t", np.uint32)],
])
def test_npy_structured_events_round_trip(tmp_path, dtype):
    names = [name for name, _ in dtype]
    rows = [(3, 1, 10, 1), (0, 2, 25, 0)]
    events = np.zeros(2, dtype=dtype)
    for i, (x, y, t, p) in enumerate(rows):
        for name, value in zip("xytp", (x, y, t, p), strict=True):
            if name in names:
                events[i][name] = value
    np.save(tmp_path / "ev.npy", events)
    got = read_events_npy(tmp_path / "ev.npy")
    assert got.dtype.names == tuple(f for f in "xytp" if f in names)
    for f in got.dtype.names:
        assert got[f].dtype == np.int64 and got[f].tolist() == events[f].astype(int).tolist()


@pytest.mark.parametrize("array, message", [
    (np.zeros(3, dtype=[("x", int), ("y", int), ("ts", int), ("p", int)]),
     "events need fields 'x' and 't' (and 'y', 'p' where the sensor has them); found "
     "('x', 'y', 'ts', 'p')"),
    (np.zeros(3, dtype=[("x", int), ("y", int), ("t", int), ("p", int), ("z", int)]),
     "events need fields 'x' and 't' (and 'y', 'p' where the sensor has them); found "
     "('x', 'y', 't', 'p', 'z')"),
    (np.zeros((3, 4), dtype=np.int64),
     "not a structured event array (int64 has no fields; tonic-style events have fields x, y, "
     "t, p)"),
    (np.zeros(3, dtype=[("x", int), ("t", float)]),
     "field 't' has dtype float64; events need integer fields (t in integer microseconds)"),
    (np.zeros((2, 2), dtype=[("x", int), ("t", int)]),
     "events must be a 1-D array, not of shape [2, 2]"),
])
def test_bad_npy_event_arrays_are_refused(tmp_path, array, message):
    path = tmp_path / "ev.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=exactly(f"{path}: {message}")):
        read_events_npy(path)


def test_npy_reader_refuses_pickles_and_archives(tmp_path):
    path = tmp_path / "ev.npy"
    np.save(path, np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: not a readable .npy event "
                                                        f"array (")):
        read_events_npy(path)
    np.savez(tmp_path / "a.npz", x=np.zeros(1))
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'a.npz'}: an .npz archive, not an "
                                                f".npy event array")):
        read_events_npy(tmp_path / "a.npz")
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'no.npy'}: no such event file")):
        read_events_npy(tmp_path / "no.npy")


# ----------------------------------------------------------------------- SHD
SHD_TIMES = [[0.0, 0.0005, 0.25, 0.999999], [], [0.1, 0.1, 1.3]]
SHD_UNITS = [[0, 699, 350, 1], [], [5, 5, 6]]


@pytest.mark.parametrize("time_dtype", [np.float16, np.float32, np.float64])
def test_shd_file_reads_the_spikes_written(tmp_path, time_dtype):
    path = tmp_path / "shd_test.h5"
    write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 19], time_dtype=time_dtype)
    events, labels = read_shd(path)
    assert labels.tolist() == [3, 0, 19] and len(events) == 3
    for got, times, units in zip(events, SHD_TIMES, SHD_UNITS, strict=True):
        assert got.dtype.names == ("x", "t")
        assert got["x"].tolist() == units
        stored = np.asarray(times, dtype=time_dtype).astype(np.float64)
        assert got["t"].tolist() == np.rint(stored * 1e6).astype(int).tolist()


def test_shd_times_become_microseconds_rounded_to_the_nearest(tmp_path):
    path = tmp_path / "s.h5"
    write_shd(path, [[0.1, 0.0000015, 0.0000025]], [[1, 2, 3]], [0], time_dtype=np.float64)
    (events,), _ = read_shd(path)
    assert events["t"].tolist() == [100_000, 2, 2]  # rint: halves to even


def test_load_data_bins_shd_into_channels(tmp_path):
    path = tmp_path / "s.h5"
    write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 19], time_dtype=np.float64)
    data = load_data(path, bins=5, duration=1_000_000, t0=0)
    assert data.inputs.shape == (3, 5, SHD_CHANNELS) and data.labels.tolist() == [3, 0, 19]
    events, _ = read_shd(path)
    for got, ev in zip(data.inputs, events, strict=True):
        rows = [(int(x), int(t)) for x, t in zip(ev["x"], ev["t"], strict=True)]
        want = naive_bins(rows, 5, (SHD_CHANNELS,), t0=0, duration=1_000_000, channels=1)
        assert got.tolist() == want.tolist()
    assert data.inputs[0, 0, 0] == 1 and data.inputs[0, 4, 1] == 1  # 0.999999 s: last bin
    assert data.info["events_outside_window"] == 1  # 1.3 s
    assert data.info["format"] == "shd" and data.info["events"] == 7


@pytest.mark.parametrize("skip", ["spikes/times", "spikes/units", "labels"])
def test_shd_missing_dataset_is_refused(tmp_path, skip):
    path = tmp_path / "s.h5"
    write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0, 19], skip=(skip,))
    with pytest.raises(DataError, match=exactly(f"{path}: no {skip!r} dataset (SHD's layout: "
                                                f"spikes/times, spikes/units, labels)")):
        read_shd(path)


@pytest.mark.parametrize("case", ["lengths", "sample", "nan", "float units", "labels 2-d"])
def test_bad_shd_files_are_refused(tmp_path, case):
    path = tmp_path / "s.h5"
    if case == "lengths":
        write_shd(path, SHD_TIMES, SHD_UNITS, [3, 0])
        message = "spikes/times (3), spikes/units (3) and labels (2) differ in length"
    elif case == "sample":
        write_shd(path, SHD_TIMES, [[0, 1, 2, 3], [], [5, 5]], [3, 0, 19])
        message = "sample 2 has 3 spike times but 2 units"
    elif case == "nan":
        write_shd(path, [[0.5, float("nan")]], [[1, 2]], [0])
        message = "spikes/times[0][1] = nan is not a finite time"
    elif case == "float units":
        with h5py.File(path, "w") as f:
            d = f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float32))
            d[0] = np.array([0.5], np.float32)
            u = f.create_dataset("spikes/units", (1,), dtype=h5py.vlen_dtype(np.float32))
            u[0] = np.array([1.0], np.float32)
            f["labels"] = np.array([0])
        message = "spikes/units of sample 0 have dtype float32; expected integer unit indices"
    else:
        write_shd(path, [[0.5]], [[1]], [0], skip=("labels",))
        with h5py.File(path, "a") as f:
            f["labels"] = np.zeros((1, 1), dtype=np.int64)
        message = "labels must be a 1-D integer array, not int64 of shape [1, 1]"
    with pytest.raises(DataError, match=exactly(f"{path}: {message}")):
        read_shd(path)


def test_shd_not_hdf5_or_missing(tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: not a readable HDF5 file (")):
        read_shd(path)
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'x.h5'}: no such SHD file")):
        read_shd(tmp_path / "x.h5")


def test_load_data_formats_and_options(tmp_path):
    path = tmp_path / "ev.npy"
    np.save(path, event_array([(1, 2, 3, 0)]))
    with pytest.raises(DataError, match=exactly(
            f"{path}: unknown data format (expected an .npz data file, an N-MNIST .bin file or "
            f"folder, or an SHD .h5 file; bin other events with bin_events and write them "
            f"with save_npz)")):
        load_data(path)
    np.savez(tmp_path / "d.npz", inputs=np.zeros((1, 2, 3)))
    with pytest.raises(DataError, match=exactly(
            f"{tmp_path / 'd.npz'}: bins, duration and t0 are for event files; an .npz data "
            f"file holds frames already")):
        load_data(tmp_path / "d.npz", bins=3)
    assert load_data(tmp_path / "d.npz").info == {"format": "npz", "samples": 1}
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(DataError, match=exactly(f"{tmp_path / 'e.bin'}: event data needs a "
                                                f"number of time bins")):
        load_data(tmp_path / "e.bin")


# ------------------------------------------------------------------- binning
def test_bins_are_half_open_over_the_span():
    # span = 20 - 10 + 1 = 11 us in 2 bins: bin = (t - 10) * 2 // 11
    events = event_array([(0, 0, 10, 0), (1, 0, 11, 0), (2, 0, 15, 1), (3, 0, 16, 1),
                          (4, 0, 20, 0)])
    frames = bin_events(events, 2, (1, 5))
    assert frames.shape == (2, 2, 1, 5) and frames.dtype == np.int64
    assert frames[0, 0, 0].tolist() == [1, 1, 0, 0, 0]
    assert frames[0, 1, 0].tolist() == [0, 0, 1, 0, 0]   # (15 - 10) * 2 // 11 = 0
    assert frames[1, 1, 0].tolist() == [0, 0, 0, 1, 0]   # (16 - 10) * 2 // 11 = 1
    assert frames[1, 0, 0].tolist() == [0, 0, 0, 0, 1]   # the last event: inside the span


def test_a_window_drops_the_events_outside_it():
    events = event_array([(0, 0, 99, 0), (0, 0, 100, 0), (0, 0, 149, 0), (0, 0, 150, 0),
                          (0, 0, 199, 1), (0, 0, 200, 1)])
    frames = bin_events(events, 2, (1, 1), t0=100, duration=100)
    assert frames[:, :, 0, 0].tolist() == [[2, 0], [1, 1]]


def test_random_events_match_the_naive_rule():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n, bins = int(rng.integers(0, 200)), int(rng.integers(1, 9))
        rows = [(int(rng.integers(0, 5)), int(rng.integers(0, 4)),
                 int(rng.integers(-50, 5000)), int(rng.integers(0, 2))) for _ in range(n)]
        events = event_array(rows)
        t0 = min((r[2] for r in rows), default=0)
        span = max((r[2] for r in rows), default=0) - t0 + 1
        assert bin_events(events, bins, (4, 5)).tolist() == naive_bins(
            rows, bins, (4, 5), t0=t0, duration=span, channels=2).tolist()
        duration, start = int(rng.integers(1, 3000)), int(rng.integers(-100, 1000))
        assert bin_events(events, bins, (4, 5), duration=duration, t0=start).tolist() == \
            naive_bins(rows, bins, (4, 5), t0=start, duration=duration, channels=2).tolist()


def test_a_window_after_every_event_is_empty():
    events = event_array([(0, 0, 5, 0), (0, 0, 9, 1)])
    assert bin_events(events, 3, (1, 1), t0=10).sum() == 0


def test_one_dimensional_events_bin_to_channels():
    events = event_array([(2, 0), (0, 5), (2, 9)], fields=("x", "t"))
    # span 10 us in 2 bins: t = 0 -> bin 0; t = 5, 9 -> bin 1
    assert bin_events(events, 2, (3,)).tolist() == [[0, 0, 1], [1, 0, 1]]
    with_p = event_array([(2, 0, 1), (0, 5, 1)], fields=("x", "t", "p"))
    assert bin_events(with_p, 1, 3).tolist() == [[1, 0, 1]]


def test_events_without_polarity_have_one_channel():
    events = event_array([(1, 0, 0), (1, 0, 3)], fields=("x", "y", "t"))
    assert bin_events(events, 1, (1, 2)).tolist() == [[[[0, 2]]]]


def test_no_events_give_empty_frames():
    frames = bin_events(event_array([]), 3, NMNIST_SIZE)
    assert frames.shape == (3, 2, 34, 34) and frames.sum() == 0


@pytest.mark.parametrize("events, kwargs, message", [
    (event_array([(0, 0, 0, 2)]), {}, "events[0]: p = 2 is outside 0..1"),
    (event_array([(0, 0, 0, 0), (-1, 0, 0, 0)]), {}, "events[1]: x = -1 is outside 0..4"),
    (event_array([(0, 4, 0, 0)]), {}, "events[0]: y = 4 is outside 0..3"),
    (event_array([(0, 0, 0, 0)]), {"bins": 0}, "bins must be a positive integer, not 0"),
    (event_array([(0, 0, 0, 0)]), {"duration": 0},
     "duration must be a positive integer (microseconds), not 0"),
    (event_array([(0, 0, 0, 0)]), {"t0": 1.5}, "t0 must be an integer (microseconds), not 1.5"),
    (event_array([(0, 0, 0, 0)]), {"size": (3,)},
     "events with fields ('x', 'y', 't', 'p') do not match a frame size [3] ((C,) is for "
     "events without a 'y' field)"),
    (event_array([(0, 0)], fields=("x", "t")), {},
     "events with fields ('x', 't') do not match a frame size [4, 5] ((H, W) needs a 'y' "
     "field)"),
    (event_array([(0, 0, 0), (1, 0, 1)], fields=("x", "t", "p")), {"size": (3,)},
     "1-D events carry one polarity; 'p' takes the values [0, 1]: select one first"),
    (event_array([(0, 0, 0, 0)]), {"duration": 2 ** 62},
     "a window of 4611686018427387904 us in 2 bins overflows int64 arithmetic"),
    (np.zeros(3), {}, "not a structured event array (float64 has no fields; tonic-style events "
                      "have fields x, y, t, p)"),
])
def test_bad_binning_is_refused(events, kwargs, message):
    kwargs = {"bins": 2, "size": (4, 5), **kwargs}
    with pytest.raises(DataError, match=exactly(message)):
        bin_events(events, kwargs.pop("bins"), kwargs.pop("size"), **kwargs)
