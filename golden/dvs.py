"""An event camera (DVS) emulated over the bundled 8x8 digits, in N-MNIST's format.

N-MNIST (G. Orchard, A. Jayawant, G. K. Cohen, N. Thakor, "Converting static
image datasets to spiking neuromorphic datasets using saccades", Frontiers in
Neuroscience 9:437, 2015) was recorded by an ATIS event camera on a pan-tilt
unit looking at a static MNIST digit on a screen while the camera made three
saccades, a triangle, each about 100 ms; the 28 x 28 digit moves across a
34 x 34 sensor.  This module does the same to scikit-learn's 8 x 8 digits
(:func:`~spikeforge.golden.tasks.digits`), deterministically.

Scene.  The digit's pixel values ``v`` (0..16) are upsampled bilinearly (pixel
centres, zero outside the image) by ``s = 28 / 8 = 3.5`` to MNIST's 28 x 28
and drawn on the sensor with their top-left corner at ``(ox, oy)``: sensor
pixel ``(x, y)`` (centre ``x + 1/2``) sees::

    g(x, y) = bilinear(v / 16)((x + 1/2 - ox) / s - 1/2, (y + 1/2 - oy) / s - 1/2)
    I(x, y) = b + (1 - b) * g(x, y)          (b: the screen's black level, default 0.1)
    L(x, y) = ln I(x, y)                      (log intensity)

Saccades.  The offset ``(ox, oy)`` moves at constant speed along a triangle,
vertices ``A (0, a) -> B (a/2, 0) -> C (a, a) -> A`` with ``a = 6`` pixels (the
``34 - 28`` pixel margin of N-MNIST's format), one saccade per side, each
``saccade_us = 100 000`` microseconds: saccade ``k`` (0, 1, 2) spans
``[k, k + 1) * saccade_us``.  (The digit moves; relative to the digit the sensor
makes the opposite motion.)  The path is sampled at ``steps`` sub-steps per
saccade, times ``t_f = round(f * saccade_us / steps)``.

Pixels.  Each pixel holds a reference log intensity ``L_ref``, initially its
first ``L``, and a contrast threshold ``C_xy``.  Between samples ``f - 1`` and
``f`` its log intensity runs linearly from ``L_prev`` to ``L_new``; with
``d = L_new - L_ref`` it emits ``n = floor(|d| / C_xy)`` events of polarity
``p = 1`` (ON) if ``d > 0`` else ``0`` (OFF), the ``j``-th (``j = 1..n``) when
``L`` crosses ``L_ref + sign(d) j C_xy``::

    t_j   = t_{f-1} + (L_ref + sign(d) j C_xy - L_prev) / (L_new - L_prev) * (t_f - t_{f-1})
    L_ref <- L_ref + sign(d) n C_xy

(timestamps in integer microseconds, rounded down and kept below ``t_f``, so
saccade ``k``'s events lie in ``[k, k + 1) * saccade_us``).  A static scene emits nothing;
an edge passing a pixel one way and back emits events of opposite polarity.

Sensor mismatch.  The thresholds are fixed per sensor pixel (one sensor
records every sample, as in N-MNIST), ``C_xy = C * max(1/4, 1 + m z_xy)`` with
``z_xy`` a standard normal from the Box-Muller transform of two
:func:`~spikeforge.golden.tasks.hash32` draws ``(hash32(seed, k, y * 34 + x) +
1/2) / 2**32``, ``k = 0, 1``: ``z = sqrt(-2 ln u0) cos(2 pi u1)``.  Defaults
``C = 0.2`` and ``m = 0.1``.  No background noise, refractory period or
latency is modelled.

Output: per sample a structured event array with int64 fields ``x``, ``y``,
``t`` (us), ``p``, ordered by ``t`` (then ``y``, ``x``, ``p``): what
:func:`~spikeforge.golden.events.read_nmnist` returns, so
:func:`~spikeforge.golden.events.bin_events` bins it to ``[T, 2, 34, 34]``.
"""

from __future__ import annotations

import numpy as np

from .events import EVENT_FIELDS, NMNIST_SIZE, bin_events

__all__ = [
    "SACCADE_US",
    "AMPLITUDE",
    "DIGIT_PIXELS",
    "saccade_path",
    "render",
    "log_intensity",
    "pixel_thresholds",
    "dvs_events",
    "event_digits",
    "iter_event_digits",
    "event_digits_frames",
]

SACCADE_US = 100_000
"""Duration of one saccade (N-MNIST: about 100 ms each)."""
AMPLITUDE = 6.0
"""Side of the saccade triangle in sensor pixels: N-MNIST's 34 - 28 margin."""
DIGIT_PIXELS = 28
"""The digit's size on the sensor (MNIST's 28 x 28)."""
TRIANGLE = ((0.0, 1.0), (0.5, 0.0), (1.0, 1.0))
"""The saccades' vertices ``(ox, oy)`` in units of the amplitude, visited in order
and back to the first."""
SPLITS = ("test", "train", "all")
DEFAULT_BINS = 9
"""Time bins of :func:`event_digits_frames` (and ``spikeforge data``): 3 per saccade."""


def _positive(value, name: str, *, integer: bool = False) -> None:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 \
            or not np.isfinite(value):
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, not {value!r}")


def saccade_path(steps: int = 16, *, amplitude: float = AMPLITUDE,
                 saccade_us: int = SACCADE_US) -> tuple[np.ndarray, np.ndarray]:
    """``(times [F], offsets [F, 2])``: the three saccades (module docstring) sampled
    at ``steps`` sub-steps each, ``F = 3 * steps + 1`` samples from ``t = 0`` to
    ``3 * saccade_us``; ``offsets`` are the digit's ``(ox, oy)`` in sensor pixels.
    ``amplitude = 0`` is a static scene."""
    _positive(steps, "steps", integer=True)
    _positive(saccade_us, "saccade_us", integer=True)
    if isinstance(amplitude, bool) or not isinstance(amplitude, (int, float, np.number)) \
            or not 0 <= amplitude < np.inf:
        raise ValueError(f"amplitude must be a non-negative number of pixels, not {amplitude!r}")
    vertices = np.array(TRIANGLE + TRIANGLE[:1], dtype=np.float64) * float(amplitude)
    frac = np.arange(steps, dtype=np.float64)[:, None] / steps
    offsets = np.concatenate([vertices[k] + frac * (vertices[k + 1] - vertices[k])
                              for k in range(3)] + [vertices[3:]])
    times = np.rint(np.arange(3 * steps + 1) * (saccade_us / steps)).astype(np.int64)
    return times, offsets


def _weights(offsets: np.ndarray, out: int, size: int, scale: float) -> np.ndarray:
    """``[F, out, size]``: bilinear weights of sensor pixel ``i`` on image pixel ``j``
    for each offset along one axis (zero outside the image)."""
    c = (np.arange(out)[None, :] + 0.5 - offsets[:, None]) / scale - 0.5
    lo = np.floor(c)
    frac = c - lo
    w = np.zeros((len(offsets), out, size))
    for shift, weight in ((0, 1.0 - frac), (1, frac)):
        j = lo.astype(np.int64) + shift
        inside = (j >= 0) & (j < size)
        f, i = np.nonzero(inside)
        np.add.at(w, (f, i, j[inside]), weight[inside])
    return w


def render(images: np.ndarray, offsets: np.ndarray, *, size=NMNIST_SIZE,
           digit_pixels: int = DIGIT_PIXELS) -> np.ndarray:
    """The brightness ``g`` ``[B, F, H, W]`` in 0..1 of ``images`` (``[B, h, w]``,
    values 0..1) upsampled to ``digit_pixels`` and drawn at each offset ``[F, 2]``
    (module docstring)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must be [B, h, w], not of shape {list(images.shape)}")
    if images.size and not (images.min() >= 0.0 and images.max() <= 1.0):
        raise ValueError(f"images must hold brightness values in [0, 1], not "
                         f"[{float(images.min())!r}, {float(images.max())!r}]")
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise ValueError(f"offsets must be [F, 2] (ox, oy), not of shape {list(offsets.shape)}")
    h, w = images.shape[1:]
    wy = _weights(offsets[:, 1], size[0], h, digit_pixels / h)
    wx = _weights(offsets[:, 0], size[1], w, digit_pixels / w)
    rows = np.matmul(wy[None], images[:, None])                 # [B, F, H, w]
    return np.matmul(rows, wx.transpose(0, 2, 1)[None])         # [B, F, H, W]


def log_intensity(g: np.ndarray, *, background: float = 0.1) -> np.ndarray:
    """``ln(b + (1 - b) g)``: the log intensity of brightness ``g`` (0..1) on a screen
    whose black is ``b`` (0 < b <= 1) of its white."""
    if isinstance(background, bool) or not isinstance(background, (int, float)) \
            or not 0 < background <= 1:
        raise ValueError(f"background must lie in (0, 1], not {background!r}")
    return np.log(background + (1.0 - background) * np.asarray(g, dtype=np.float64))


def pixel_thresholds(threshold: float = 0.2, *, mismatch: float = 0.1, seed: int = 0,
                     size=NMNIST_SIZE) -> np.ndarray:
    """The sensor's contrast thresholds ``C_xy`` ``[H, W]`` (module docstring)."""
    from .tasks import hash32

    _positive(threshold, "threshold")
    if isinstance(mismatch, bool) or not isinstance(mismatch, (int, float)) \
            or not 0 <= mismatch < np.inf:
        raise ValueError(f"mismatch must be a non-negative number, not {mismatch!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    pixel = np.arange(size[0] * size[1], dtype=np.uint64)
    u0, u1 = ((hash32(seed, k, pixel).astype(np.float64) + 0.5) / 2.0 ** 32 for k in (0, 1))
    z = np.sqrt(-2.0 * np.log(u0)) * np.cos(2.0 * np.pi * u1)
    return (threshold * np.maximum(0.25, 1.0 + mismatch * z)).reshape(size)


def dvs_events(log_frames: np.ndarray, times: np.ndarray, thresholds) -> list[np.ndarray]:
    """The events of a DVS watching ``log_frames`` (``[B, F, H, W]`` log intensities
    at ``times`` ``[F]`` in increasing integer microseconds) with contrast
    ``thresholds`` (a number or ``[H, W]``): per sample a structured array with
    int64 fields ``x``, ``y``, ``t``, ``p``, ordered by ``t``, ``y``, ``x``, ``p``
    (module docstring, "Pixels")."""
    frames = np.asarray(log_frames, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[1] < 1:
        raise ValueError(f"log_frames must be [B, F, H, W] with F >= 1, not of shape "
                         f"{list(frames.shape)}")
    times = np.asarray(times)
    if times.shape != (frames.shape[1],) or times.dtype.kind not in "iu" or \
            (np.diff(times) <= 0).any():
        raise ValueError(f"times must be {frames.shape[1]} increasing integer microseconds, "
                         f"not {times.dtype} of shape {list(times.shape)}")
    b, _, h, w = frames.shape
    c = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (h, w))
    bad = ~(np.isfinite(c) & (c > 0))
    if bad.any():
        y, x = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"thresholds must be positive and finite: the threshold of pixel "
                         f"(x={x}, y={y}) is {float(c[y, x])!r}")
    # Only a pixel whose log intensity ranges over at least its threshold can fire
    # (L_ref starts at its first value and moves only when it fires).
    flat = frames.transpose(1, 0, 2, 3).reshape(frames.shape[1], -1)     # [F, B*H*W]
    c = np.broadcast_to(c, (b, h, w)).reshape(-1)
    live = np.nonzero(flat.max(axis=0) - flat.min(axis=0) >= c)[0]
    flat, c = flat[:, live], c[live]
    ref = flat[0].copy()
    parts = []
    for f in range(1, flat.shape[0]):
        prev, new = flat[f - 1], flat[f]
        d = new - ref
        n = np.floor(np.abs(d) / c).astype(np.int64)
        where = np.nonzero(n)[0]
        if not len(where):
            continue
        sign = np.sign(d[where])
        counts = n[where]
        total = int(counts.sum())
        first = np.repeat(np.cumsum(counts) - counts, counts)
        j = np.arange(total) - first + 1                      # 1..n within each pixel
        level = np.repeat(ref[where] - prev[where], counts) + \
            np.repeat(sign * c[where], counts) * j
        span = np.repeat(new[where] - prev[where], counts)
        frac = np.clip(np.divide(level, span, out=np.ones_like(span), where=span != 0),
                       0.0, 1.0)
        gap = int(times[f] - times[f - 1])
        t = times[f - 1] + np.minimum(np.floor(frac * gap).astype(np.int64), gap - 1)
        parts.append((np.repeat(live[where], counts), t,
                      np.repeat(sign > 0, counts).astype(np.int64)))
        ref[where] += sign * counts * c[where]
    # One int64 key per event, sorted: (sample, t, y, x, p) in that order.
    span_t = int(times[-1]) + 1
    key = np.sort(np.concatenate([(pix // (h * w) * span_t + t) * (2 * h * w)
                                  + pix % (h * w) * 2 + p for pix, t, p in parts])
                  if parts else np.zeros(0, dtype=np.int64))
    rest, p = np.divmod(key, 2)
    rest, pixel = np.divmod(rest, h * w)
    sample, t = np.divmod(rest, span_t)
    y, x = np.divmod(pixel, w)
    bounds = np.searchsorted(sample, np.arange(b + 1))
    out = []
    for i in range(b):
        events = np.empty(bounds[i + 1] - bounds[i], dtype=[(f, np.int64) for f in EVENT_FIELDS])
        for name, values in zip(EVENT_FIELDS, (x, y, t, p), strict=True):
            events[name] = values[bounds[i]:bounds[i + 1]]
        out.append(events)
    return out


def _digits(split: str):
    """``(values [N, 8, 8] in 0..16, labels [N], ids [N])`` of a digits split, or of
    all 1797 images (``all``, in their order)."""
    from . import tasks

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if split == "all":
        from sklearn.datasets import load_digits

        data = load_digits()
        x, y = data.data.astype(np.int64), data.target.astype(np.int64)
        return x.reshape(-1, 8, 8), y, np.arange(len(y))
    data = tasks.digits(split)
    return data.x.reshape(-1, 8, 8), data.y, data.ids


def event_digits(split: str = "test", *, threshold: float = 0.2, mismatch: float = 0.1,
                 seed: int = 0, steps: int = 16, amplitude: float = AMPLITUDE,
                 background: float = 0.1, limit: int | None = None, chunk: int = 64,
                 progress: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """``(events, labels)``: the emulated recordings (module docstring) of a digits
    split (``test`` / ``train``: :func:`~spikeforge.golden.tasks.digits`' split;
    ``all``: the 1797 images in order), its first ``limit`` samples.
    ``threshold``: the contrast threshold ``C`` (log units); ``mismatch``: the
    relative spread ``m`` of the pixels' thresholds; ``seed``: the sensor (its
    thresholds); ``steps``: sub-steps per saccade; ``amplitude``: the triangle's
    side in pixels (0: a static scene); ``background``: the screen's black level;
    ``progress``: a bar over the samples."""
    from tqdm.auto import tqdm

    events, labels = [], [np.zeros(0, dtype=np.int64)]
    total = len(_digits(split)[1])
    if limit is not None:
        _positive(limit, "limit", integer=True)
        total = min(limit, total)
    with tqdm(total=total, desc=f"event-digits ({split})", unit="sample",
              disable=not progress, leave=False) as bar:
        for part, part_labels in iter_event_digits(
                split, threshold=threshold, mismatch=mismatch, seed=seed, steps=steps,
                amplitude=amplitude, background=background, limit=limit, chunk=chunk):
            events += part
            labels.append(part_labels)
            bar.update(len(part_labels))
    return events, np.concatenate(labels)


def iter_event_digits(split: str = "test", *, threshold: float = 0.2, mismatch: float = 0.1,
                      seed: int = 0, steps: int = 16, amplitude: float = AMPLITUDE,
                      background: float = 0.1, limit: int | None = None, chunk: int = 64):
    """:func:`event_digits` ``chunk`` samples at a time: yields ``(events, labels)`` per
    chunk, in order (the events of a whole split need not be held at once)."""
    values, labels, _ = _digits(split)
    if limit is not None:
        _positive(limit, "limit", integer=True)
        values, labels = values[:limit], labels[:limit]
    _positive(chunk, "chunk", integer=True)
    times, offsets = saccade_path(steps, amplitude=amplitude)
    c = pixel_thresholds(threshold, mismatch=mismatch, seed=seed)
    for start in range(0, len(values), chunk):
        g = render(values[start:start + chunk] / 16.0, offsets)
        yield (dvs_events(log_intensity(g, background=background), times, c),
               labels[start:start + chunk])


def event_digits_frames(split: str = "test", bins: int = DEFAULT_BINS, *, threshold: float = 0.2,
                        mismatch: float = 0.1, seed: int = 0, steps: int = 16,
                        amplitude: float = AMPLITUDE, background: float = 0.1,
                        limit: int | None = None, progress: bool = False,
                        ) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(inputs [N, bins, 2, 34, 34] int64, labels [N], info)``: :func:`event_digits`
    binned by :func:`~spikeforge.golden.events.bin_events` over the fixed window
    ``[0, 3 * SACCADE_US)`` (``t0 = 0``, ``duration = 3 * SACCADE_US``: with
    ``bins`` a multiple of 3 every bin lies within one saccade); ``info`` holds the
    event counts and the emulation's settings (JSON-able)."""
    _positive(bins, "bins", integer=True)
    settings = {"threshold": threshold, "mismatch": mismatch, "seed": seed, "steps": steps,
                "amplitude": amplitude, "background": background}
    events, labels = event_digits(split, limit=limit, progress=progress, **settings)
    window = 3 * SACCADE_US
    inputs = np.zeros((len(events), bins, 2, *NMNIST_SIZE), dtype=np.int64)
    for i, e in enumerate(events):
        inputs[i] = bin_events(e, bins, NMNIST_SIZE, duration=window, t0=0)
    counts = np.array([len(e) for e in events], dtype=np.int64)
    on = sum(int(e["p"].sum()) for e in events)
    total = int(counts.sum())
    info = {"format": "event-digits", "split": split, "samples": len(events), "bins": bins,
            "t0_us": 0, "duration_us": window, "events": total,
            "events_per_sample": total / len(events) if len(events) else 0.0,
            "events_per_sample_min": int(counts.min()) if len(events) else 0,
            "events_per_sample_max": int(counts.max()) if len(events) else 0,
            "on_fraction": on / total if total else 0.0,
            "settings": {**settings, "saccade_us": SACCADE_US,
                         "digit_pixels": DIGIT_PIXELS}}
    return inputs, labels, info
