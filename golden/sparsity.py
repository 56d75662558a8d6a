"""``spikeforge experiment sparsity``: accuracy vs spikes per synapse vs estimated
energy, for the static digits and the event digits, against each baseline.

Each point of the grid (task, input encoding, T, for the event digits the event
step ``q``, and the activity penalty ``lambda``, ``rho`` of :mod:`.train`) trains a
model (:func:`.train.train`, the 64 -> hidden -> 10 network) and measures on the
test split:

* ``accuracy``: the integer model's;
* ``spikes_per_synapse``: synaptic events per sample over the dense connections,
  ``synops / sum_edges fanout`` (Dampfhoffer et al., IEEE TETCI 2023: break-even
  at 0.15-1.38 against a dense ANN); ``firing_rate``: spikes per neuron per step;
* ``energy``: the estimate of :mod:`.energy` from the golden model's counts (the
  hardware's counters count the same, bit-exact), the SNN's pJ per sample and its
  ratio to each baseline (``ann_int8``, ``ann_lowbit``, ``ann_zero_skip``) with the
  break-even firing rates.  The baselines make one dense pass per sample for the
  static digits (a static input) and one per time bin for the event digits (the
  input changes every bin: a non-spiking network that sees what the SNN sees
  processes each bin, as :func:`.energy.estimate` does for any temporal network);
  the event rows also carry the ratio against a single-pass ``ann_lowbit`` on the
  summed frame (which sees no timing);
* ``fits_demo``: whether the model compiles for the simulated board's default
  core (``demo``; ``fit_error`` names the limit otherwise).

The Pareto frontier (accuracy up, energy ratio against ``ann_lowbit`` down) is
marked per task; the best trade-off per baseline is the lowest ratio among the
points at ``ACCURACY_GOAL`` or above (else the most accurate point).  With
``device`` the best event-digits point runs on a device (``sim://``: the
simulated board) and reports ``bit_exact`` and the estimate from the DEVICE's
counters (:func:`..evaluate.evaluate_on_device`).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from .energy import BASELINES, counts_from_run, estimate, estimate_run
from .train import config_for, evaluate, task_data, train

__all__ = ["GRIDS", "ACCURACY_GOAL", "ENERGY_GOAL", "DEFAULT_EPOCHS", "points", "run",
           "measure", "pareto", "best", "fit_error", "device_check", "label"]

ACCURACY_GOAL = 0.95
"""The accuracy a trade-off must keep (issue 29's acceptance)."""
ENERGY_GOAL = 1 / 3
"""The acceptance's energy goal: at most this fraction of ``ann_lowbit``."""
DEFAULT_EPOCHS = 30
SPARSE = {"activity_weight": 5.0, "target_rate": 0.02}
"""The default grid's activity penalty (``lambda``, ``rho``)."""
_STATIC = [
    {"task": "digits", "encoding": "rate", "timesteps": 8},
    {"task": "digits", "encoding": "direct", "timesteps": 1},
    {"task": "digits", "encoding": "delta", "timesteps": 4},
    {"task": "digits", "encoding": "delta", "timesteps": 4, **SPARSE},
]
_EVENT = [
    {"task": "event-digits", "encoding": "counts", "timesteps": 1, "event_step": 8},
    {"task": "event-digits", "encoding": "counts", "timesteps": 4, "event_step": 80},
    {"task": "event-digits", "encoding": "spikes", "timesteps": 4, "event_step": 80},
    {"task": "event-digits", "encoding": "counts", "timesteps": 9, "event_step": 40},
    {"task": "event-digits", "encoding": "counts", "timesteps": 9, "event_step": 40, **SPARSE},
    {"task": "event-digits", "encoding": "counts", "timesteps": 9, "event_step": 40,
     "hidden2": 48, **SPARSE},
]


def _full() -> list[dict]:
    grid = []
    for enc, t in (("rate", 4), ("rate", 8), ("direct", 1), ("direct", 2), ("delta", 2),
                   ("delta", 4), ("delta", 8)):
        for penalty in ({}, {"activity_weight": 1.0, "target_rate": 0.05}, SPARSE):
            grid.append({"task": "digits", "encoding": enc, "timesteps": t, **penalty})
    for enc in ("counts", "spikes"):
        for t, q in ((1, 8), (3, 8), (3, 64), (4, 64), (4, 80), (6, 48), (9, 32), (9, 40)):
            for penalty in ({}, SPARSE):
                for deep in ({}, {"hidden2": 48}):
                    grid.append({"task": "event-digits", "encoding": enc, "timesteps": t,
                                 "event_step": q, **deep, **penalty})
    return grid


GRIDS = {"default": _STATIC + _EVENT, "full": _full()}
"""The named grids: ``default`` (a few minutes on 2 cores) and ``full``."""


def points(grid) -> list[dict]:
    """The points of a grid: a name of :data:`GRIDS` or a list of point dicts
    (``task``, ``encoding``, ``timesteps``, optionally ``event_step``,
    ``activity_weight``, ``target_rate``, ``hidden``)."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; choose one of {tuple(GRIDS)}")
        return [dict(p) for p in GRIDS[grid]]
    grid = [dict(p) for p in grid]
    for p in grid:
        if p.get("task") not in ("digits", "event-digits"):
            raise ValueError(f"a sparsity point's task must be 'digits' or 'event-digits', "
                             f"not {p.get('task')!r}")
    return grid


def label(p: dict) -> str:
    """A point's short name: ``event-digits/counts T=4 q=80 h2=48 lambda=5 rho=0.02``."""
    text = f"{p['task']}/{p['encoding']} T={p['timesteps']}"
    if "event_step" in p:
        text += f" q={p['event_step']}"
    if p.get("hidden2"):
        text += f" h2={p['hidden2']}"
    if p.get("activity_weight"):
        text += f" lambda={p['activity_weight']:g} rho={p['target_rate']:g}"
    return text


def fit_error(net) -> str | None:
    """None if ``net`` compiles for the simulated board's default core (``demo``),
    else the compiler's message naming the limit."""
    from ..contract.compiler import FitError, compile_network
    from ..sim.rtl import REFERENCE_CONFIGS

    try:
        compile_network(net, REFERENCE_CONFIGS["demo"])
    except FitError as exc:
        return str(exc)
    return None


def _passes(meta: dict) -> int:
    """The baselines' dense passes per sample: one per time bin for the event task."""
    return meta["timesteps"] if meta["task"] == "event-digits" else 1


def _summary(e: dict) -> dict:
    return {k: {"total_pj": b["total_pj"], "ratio": b["ratio"],
                "break_even_firing_rate": b["break_even_firing_rate"]}
            for k, b in e["baselines"].items()}


def measure(net, meta: dict) -> dict:
    """The measurements of one trained point on its test split (module docstring)."""
    x, _ = task_data(meta, "test")
    counts = counts_from_run(net, x)
    passes = _passes(meta)
    e = estimate(net, counts, ann_passes=passes)
    synapses = e["ann"]["macs"] / passes
    error = fit_error(net)
    row = {"accuracy": evaluate(net, meta)["accuracy"],
           "accuracy_float": meta["training"]["accuracy_float"],
           "synops_per_sample": e["snn"]["per_sample"]["weight_reads"],
           "synapses": synapses,
           "spikes_per_synapse": e["snn"]["per_sample"]["weight_reads"] / synapses,
           "firing_rate": e["firing_rate"], "firing_rates": e["firing_rates"],
           "snn_pj": e["snn"]["total_pj"], "snn_energy_pj": e["snn"]["energy_pj"],
           "ann_passes": passes, "baselines": _summary(e),
           "fits_demo": error is None, "fit_error": error}
    if passes != 1:
        row["ann_lowbit_one_pass_ratio"] = estimate(net, counts)["baselines"]["ann_lowbit"][
            "ratio"]
    return row


def pareto(rows: list[dict], baseline: str = "ann_lowbit") -> list[int]:
    """Indices of the rows on the Pareto frontier of (accuracy up, ratio against
    ``baseline`` down), in order of increasing ratio."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["baselines"][baseline]["ratio"],
                                                     -rows[i]["accuracy"]))
    front, top = [], -1.0
    for i in order:
        if rows[i]["accuracy"] > top:
            front.append(i)
            top = rows[i]["accuracy"]
    return front


def best(rows: list[dict], baseline: str) -> int | None:
    """The index of the best trade-off against ``baseline``: the lowest ratio among
    the rows at :data:`ACCURACY_GOAL` or above, else the most accurate row."""
    if not rows:
        return None
    good = [i for i, r in enumerate(rows) if r["accuracy"] >= ACCURACY_GOAL]
    if good:
        return min(good, key=lambda i: rows[i]["baselines"][baseline]["ratio"])
    return max(range(len(rows)), key=lambda i: (rows[i]["accuracy"],
                                                 -rows[i]["baselines"][baseline]["ratio"]))


def _verdict(row: dict, baseline: str) -> str:
    ratio = row["baselines"][baseline]["ratio"]
    accurate = row["accuracy"] >= ACCURACY_GOAL
    wins = "the SNN wins" if ratio < 1 else "the SNN does NOT win"
    return (f"{wins} against {baseline}: {row['label']} at accuracy {row['accuracy']:.4f} "
            f"costs {ratio:.3g} x the baseline's energy"
            + ("" if accurate else f" (no point reached accuracy {ACCURACY_GOAL}: this is the "
                                   f"most accurate)"))


def device_check(url: str, net, meta: dict, *, samples: int = 100,
                 progress: bool = False) -> dict:
    """Run ``net`` on the device at ``url`` over the first ``samples`` test samples
    (:func:`..evaluate.evaluate_on_device`): ``bit_exact``, the accuracies and the
    energy estimate from the DEVICE's counters against each baseline (the same
    passes as :func:`measure`)."""
    from ..device import open as open_device
    from ..evaluate import evaluate_on_device

    x, y = task_data(meta, "test")
    x, y = x[:, :samples], y[:samples]
    with open_device(url, progress=progress) as dev:
        report = evaluate_on_device(dev, net, meta, data=(x, y), progress=progress)
        where = dev.url
    e = estimate_run(net, x, counters=report["counters"].get("layers", {}), trace=net.run(x),
                     source="device-counters", ann_passes=_passes(meta))
    return {"device": where, "samples": report["samples"], "bit_exact": report["bit_exact"],
            "accuracy_device": report["accuracy_device"],
            "accuracy_golden": report["accuracy_golden"], "agreement": report["agreement"],
            "counts_source": e["counts_source"], "snn_pj": e["snn"]["total_pj"],
            "firing_rate": e["firing_rate"], "ann_passes": e["ann"]["passes"],
            "baselines": _summary(e), "label": e["label"]}


def run(*, grid="default", epochs=None, seed=0, device=None, device_samples=100,
        progress=False, keep_models=False, **_) -> dict:
    """The sweep (module docstring); a JSON-ready dict.  ``keep_models``: also return
    the trained ``(net, meta)`` per row under ``"models"`` (not JSON)."""
    grid_points = points(grid)
    rows, models = [], []
    for p in tqdm(grid_points, desc="sparsity", disable=not progress):
        cfg = config_for(p["task"], **{k: v for k, v in p.items() if k != "task"},
                         epochs=epochs or DEFAULT_EPOCHS, seed=seed)
        net, meta = train(cfg, progress=progress)
        rows.append({"label": label(p), **p, **measure(net, meta)})
        models.append((net, meta))
    result = {"experiment": "sparsity", "grid": grid if isinstance(grid, str) else "custom",
              "epochs": epochs or DEFAULT_EPOCHS, "seed": seed,
              "accuracy_goal": ACCURACY_GOAL, "energy_goal_vs_ann_lowbit": ENERGY_GOAL,
              "baselines": BASELINES, "results": rows, "best": {}, "frontier": {}}
    for task in ("digits", "event-digits"):
        idx = [i for i, r in enumerate(rows) if r["task"] == task]
        if not idx:
            continue
        sub = [rows[i] for i in idx]
        result["frontier"][task] = [idx[i] for i in pareto(sub)]
        result["best"][task] = {}
        for baseline in BASELINES:
            b = idx[best(sub, baseline)]
            result["best"][task][baseline] = {
                "index": b, "label": rows[b]["label"], "accuracy": rows[b]["accuracy"],
                "ratio": rows[b]["baselines"][baseline]["ratio"],
                "meets_accuracy": rows[b]["accuracy"] >= ACCURACY_GOAL,
                "verdict": _verdict(rows[b], baseline)}
    event = result["best"].get("event-digits", {}).get("ann_lowbit")
    if event is not None:
        row = rows[event["index"]]
        event["meets_energy"] = row["baselines"]["ann_lowbit"]["ratio"] <= ENERGY_GOAL
        event["fits_demo"] = row["fits_demo"]
        if device:
            event["device"] = device_check(device, *models[event["index"]],
                                           samples=device_samples, progress=progress)
    if keep_models:
        result["models"] = models
    return result
