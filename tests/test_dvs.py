"""The emulated event camera over the digits (golden/dvs.py) is what it claims: a
DVS (log-intensity change events, ON/OFF, a contrast threshold) making N-MNIST's
three saccades over a static image, in N-MNIST's format; and ``spikeforge data
event-digits`` writes it as a data file that ``eval --data`` takes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikeforge.cli import main
from spikeforge.golden import dvs
from spikeforge.golden.data import load_data
from spikeforge.golden.events import NMNIST_SIZE, bin_events, read_nmnist, write_nmnist
from spikeforge.golden.tasks import digits


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def square() -> np.ndarray:
    """An 8x8 image: a bright 6x6 square on black (its interior uniform)."""
    img = np.zeros((1, 8, 8))
    img[0, 1:7, 1:7] = 1.0
    return img


def events_of(image, offsets, times, threshold=0.2) -> np.ndarray:
    frames = dvs.log_intensity(dvs.render(image, offsets))
    return dvs.dvs_events(frames, np.asarray(times, dtype=np.int64), threshold)[0]


def there_and_back(step=0.25, moves=12):
    """Offsets moving right by ``moves * step`` pixels, then back left; 1 ms apart."""
    right = [[i * step, 3.0] for i in range(moves + 1)]
    left = [[(moves - i) * step, 3.0] for i in range(1, moves + 1)]
    offsets = np.array(right + left)
    return offsets, np.arange(len(offsets)) * 1000, moves * 1000


def test_a_static_scene_emits_no_events():
    events, labels = dvs.event_digits(limit=12, amplitude=0)
    assert len(events) == 12 and all(len(e) == 0 for e in events)
    frames = np.broadcast_to(np.random.default_rng(0).normal(size=(1, 1, 34, 34)),
                             (1, 5, 34, 34))
    assert len(dvs.dvs_events(frames, np.arange(5), 0.01)[0]) == 0
    # ... and the same digits moving do emit events.
    assert all(len(e) > 1000 for e in dvs.event_digits(limit=12)[0])


def test_polarity_flips_when_the_motion_reverses():
    offsets, times, turn = there_and_back()
    e = events_of(square(), offsets, times)
    there, back = e[e["t"] < turn], e[e["t"] >= turn]
    assert len(there) > 100 and len(back) > 100
    # Moving right, the leading (right) edge brightens its pixels: ON; the trailing
    # edge darkens them: OFF.  Moving back, the other way round.
    assert there[there["p"] == 1]["x"].min() > 20 and there[there["p"] == 0]["x"].max() < 14
    assert back[back["p"] == 1]["x"].max() < 14 and back[back["p"] == 0]["x"].min() > 20
    # Pixel by pixel: one polarity going, the other coming back, about as many events.
    for pixel in {(int(x), int(y)) for x, y in zip(there["x"], there["y"], strict=True)}:
        go = there[(there["x"] == pixel[0]) & (there["y"] == pixel[1])]["p"]
        come = back[(back["x"] == pixel[0]) & (back["y"] == pixel[1])]["p"]
        assert len(set(go.tolist())) == 1
        assert set(come.tolist()) <= {1 - int(go[0])}
        assert abs(len(come) - len(go)) <= 1


def test_events_only_where_the_image_has_edges():
    times, offsets = dvs.saccade_path()
    e = events_of(square(), offsets, times)
    # The square's edges ramp over sensor x (or y) in [1.75, 5.25] and [22.75, 26.25]
    # at offset 0, plus the 0..6 pixel sweep: the interior [12, 22)^2 stays uniformly
    # bright (and the border beyond 33 is off the sensor), so it is silent.
    core = (e["x"] >= 12) & (e["x"] < 22) & (e["y"] >= 12) & (e["y"] < 22)
    assert len(e) > 1000 and not core.any()
    near = lambda v: ((v >= 1) & (v <= 11)) | ((v >= 22) & (v <= 33))  # noqa: E731
    assert (near(e["x"]) | near(e["y"])).all()
    for side in (e["x"] <= 11, e["x"] >= 22, e["y"] <= 11, e["y"] >= 22):
        assert side.sum() > 100
    # A blank image has no edges and no events.
    assert len(events_of(np.zeros((1, 8, 8)), offsets, times)) == 0


def test_counts_scale_with_the_contrast_threshold():
    counts = [sum(len(e) for e in dvs.event_digits(limit=10, threshold=c, mismatch=0.0)[0])
              for c in (0.1, 0.2, 0.4)]
    assert counts[0] > counts[1] > counts[2] > 0
    # Each event is one threshold's worth of log-intensity change: doubling the
    # threshold about halves the events (floor() loses a partial step per pass).
    for finer, coarser in zip(counts, counts[1:], strict=False):
        assert 1.8 < finer / coarser < 2.8


def test_deterministic_for_a_seed():
    one, labels = dvs.event_digits(limit=6, seed=3)
    two, _ = dvs.event_digits(limit=6, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    other, _ = dvs.event_digits(limit=6, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))
    # The seed is the sensor's threshold mismatch: without mismatch it changes nothing.
    flat = [dvs.event_digits(limit=6, seed=s, mismatch=0.0)[0] for s in (3, 4)]
    assert all(np.array_equal(a, b) for a, b in zip(*flat, strict=True))
    c = dvs.pixel_thresholds(0.2, mismatch=0.1, seed=3)
    assert c.shape == NMNIST_SIZE and 0.18 < c.mean() < 0.22 and 0.01 < c.std() < 0.03
    assert np.array_equal(labels, digits("test").y[:6])


def test_the_nmnist_geometry_and_format():
    events, labels = dvs.event_digits(limit=20)
    for e in events:
        assert e.dtype.names == ("x", "y", "t", "p")
        assert all(e.dtype[f] == np.int64 for f in e.dtype.names)
        assert e["x"].min() >= 0 and e["x"].max() < 34 and e["y"].min() >= 0 \
            and e["y"].max() < 34
        assert set(np.unique(e["p"]).tolist()) == {0, 1}
        assert (np.diff(e["t"]) >= 0).all()
    frames = bin_events(events[0], 9, NMNIST_SIZE, duration=3 * dvs.SACCADE_US, t0=0)
    assert frames.shape == (9, 2, 34, 34) and frames.sum() == len(events[0])
    x, y, info = dvs.event_digits_frames(limit=20, bins=9)
    assert x.shape == (20, 9, 2, 34, 34) and x.dtype == np.int64
    assert np.array_equal(x[0], frames) and np.array_equal(y, labels)
    assert info["events"] == sum(len(e) for e in events) == int(x.sum())


def test_three_saccades_in_time():
    """The digit moves along a triangle, one side per 100 ms saccade: A (0, 6) ->
    B (3, 0) -> C (6, 6) -> A; the third saccade is horizontal, so the square's
    horizontal edges (away from its corners) are silent during it."""
    times, offsets = dvs.saccade_path(16)
    assert times[0] == 0 and times[-1] == 3 * dvs.SACCADE_US and len(times) == 49
    assert offsets[[0, 16, 32, 48]].tolist() == [[0, 6], [3, 0], [6, 6], [0, 6]]
    e = events_of(square(), offsets, times)
    assert e["t"].min() >= 0 and e["t"].max() < 3 * dvs.SACCADE_US
    middle = (e["x"] >= 14) & (e["x"] < 20)  # the top and bottom edges' middle
    for k in range(3):
        during = (e["t"] >= k * dvs.SACCADE_US) & (e["t"] < (k + 1) * dvs.SACCADE_US)
        assert during.sum() > 1000
        # Each saccade ends where it began its side: as many ON as OFF within ~5 %.
        on = int(e[during]["p"].sum())
        assert abs(2 * on - during.sum()) < 0.05 * during.sum()
        assert (middle & during).sum() > 500 if k < 2 else not (middle & during).any()


def test_bad_settings_name_the_value():
    cases = [(lambda: dvs.event_digits(threshold=0.0), "threshold must be a positive number, "
              "not 0.0"),
             (lambda: dvs.event_digits(mismatch=-1.0), "mismatch must be a non-negative "
              "number, not -1.0"),
             (lambda: dvs.event_digits(split="dev"), "split must be one of test, train, all, "
              "not 'dev'"),
             (lambda: dvs.saccade_path(0), "steps must be a positive integer, not 0"),
             (lambda: dvs.log_intensity(np.zeros(3), background=0.0),
              "background must lie in (0, 1], not 0.0"),
             (lambda: dvs.dvs_events(np.zeros((1, 2, 3, 3)), np.array([5, 5]), 0.2),
              "times must be 2 increasing integer microseconds"),
             (lambda: dvs.dvs_events(np.zeros((1, 2, 3, 3)), np.array([0, 5]),
                                     np.array([[0.2, 0.2, 0.2], [0.2, 0.2, -0.1], [0.2] * 3])),
              "thresholds must be positive and finite: the threshold of pixel (x=2, y=1) is "
              "-0.1"),
             (lambda: dvs.render(np.full((1, 8, 8), 16.0), np.zeros((3, 2))),
              "images must hold brightness values in [0, 1], not [16.0, 16.0]")]
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value).startswith(message)


def test_nmnist_files_of_the_events_read_back(tmp_path):
    events, _ = dvs.event_digits(limit=3)
    for i, e in enumerate(events):
        write_nmnist(tmp_path / f"{i}.bin", e)
        assert np.array_equal(read_nmnist(tmp_path / f"{i}.bin"), e)
    bad = events[0].copy()
    bad["t"][5] = 1 << 23
    with pytest.raises(ValueError) as err:
        write_nmnist(tmp_path / "bad.bin", bad)
    assert str(err.value) == f"events[5]: t = {1 << 23} is outside 0..{(1 << 23) - 1}"


# ----------------------------------------------------------------------- CLI
def model_2312(tmp_path):
    """A random spiking network taking N-MNIST's 2 x 34 x 34 frames."""
    from spikeforge.golden.modelfile import save_model
    from test_cli_data import build_net

    path = tmp_path / "nmnist.safetensors"
    save_model(path, build_net(input_size=2 * 34 * 34), {})
    return path


def test_data_event_digits_writes_an_npz_that_eval_takes(tmp_path, capsys):
    out = tmp_path / "ev.npz"
    assert main(["data", "event-digits", "--out", str(out), "--limit", "12", "--bins", "6",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [12, 6, 2, 34, 34] and report["out"] == str(out)
    assert report["settings"]["threshold"] == 0.2 and report["duration_us"] == 300_000
    data = load_data(out)
    want, labels, _ = dvs.event_digits_frames(limit=12, bins=6)
    assert torch.equal(data.inputs, torch.from_numpy(want))
    assert torch.equal(data.labels, torch.from_numpy(labels))
    assert report["events"] == int(want.sum())
    model = model_2312(tmp_path)
    assert main(["eval", str(model), "--data", str(out), "--clip", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 12 and result["timesteps"] == 6 and "accuracy" in result
    assert set(result["energy"]["baselines"]) == {"ann_int8", "ann_lowbit", "ann_zero_skip"}


def test_data_event_digits_as_an_nmnist_folder(tmp_path, capsys):
    out = tmp_path / "nmnist"
    assert main(["data", "event-digits", "--out", str(out), "--format", "nmnist",
                 "--limit", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 5
    events, labels = dvs.event_digits(limit=5)
    data = load_data(out, bins=9, t0=0, duration=3 * dvs.SACCADE_US)
    order = np.argsort(labels, kind="stable")  # the folder reads label by label
    assert torch.equal(data.labels, torch.from_numpy(labels[order]))
    assert data.info["events"] == sum(len(e) for e in events)
    want = np.stack([bin_events(events[i], 9, NMNIST_SIZE, t0=0, duration=300_000)
                     for i in order])
    assert torch.equal(data.inputs, torch.from_numpy(want))


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/x.bin"], "--out {tmp}/x.bin: an .npz data file needs a name ending in "
                               ".npz (or give --format nmnist for a folder)"),
    (["--out", "{tmp}/d", "--format", "nmnist", "--bins", "4"],
     "--bins is for --format npz; an N-MNIST folder holds the events (bin them with eval "
     "--data FOLDER --bins T)"),
    (["--out", "{tmp}/x.npz", "--threshold", "-0.5"],
     "threshold must be a positive number, not -0.5"),
    (["--out", "{tmp}/no/x.npz"], "--out {tmp}/no/x.npz: the directory '{tmp}/no' does not "
                                  "exist"),
])
def test_data_refusals(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["data", "event-digits", *argv, "--limit", "2"]) == 2
    assert capsys.readouterr().err == f"spikeforge: error: " \
        f"{message.replace('{tmp}', str(tmp_path))}\n"
