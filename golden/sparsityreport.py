"""The sparsity experiment's outputs (:mod:`.sparsity`): text lines, the table
(Markdown and CSV), the Pareto plot and ``report.md``."""

from __future__ import annotations

import csv
from pathlib import Path

from .energy import BASELINES, YAN
from .sparsity import ACCURACY_GOAL, ENERGY_GOAL

__all__ = ["describe", "table", "write_csv", "plot", "report"]

_COLUMNS = ("task", "encoding", "T", "q", "hidden", "lambda", "rho", "accuracy",
            "spikes/synapse",
            "firing rate", "SNN nJ", *(f"/{b}" for b in BASELINES), "/ann_lowbit 1-pass",
            "fits demo")


def _cells(r: dict) -> list[str]:
    def num(value, fmt="{:.3g}"):
        return "-" if value is None else fmt.format(value)

    hidden = str(r.get("hidden", 128)) + (f"+{r['hidden2']}" if r.get("hidden2") else "")
    return [r["task"], r["encoding"], str(r["timesteps"]), str(r.get("event_step", "-")), hidden,
            num(r.get("activity_weight") or None, "{:g}"),
            num(r.get("target_rate") if r.get("activity_weight") else None, "{:g}"),
            f"{r['accuracy']:.4f}", num(r["spikes_per_synapse"]), num(r["firing_rate"]),
            f"{r['snn_pj'] / 1000:.3g}",
            *(num(r["baselines"][b]["ratio"]) for b in BASELINES),
            num(r.get("ann_lowbit_one_pass_ratio")), "yes" if r["fits_demo"] else "NO"]


def table(result: dict) -> list[str]:
    """The results as a Markdown table (energy ratios: SNN / baseline, estimates)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    return lines + ["| " + " | ".join(_cells(r)) + " |" for r in result["results"]]


def write_csv(result: dict, path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_COLUMNS)
        for r in result["results"]:
            w.writerow(_cells(r))


def _device_lines(d: dict) -> list[str]:
    return [f"device {d['device']}: {d['samples']} samples, bit_exact {d['bit_exact']}, "
            f"accuracy {d['accuracy_device']:.4f} (golden {d['accuracy_golden']:.4f}); energy "
            f"ESTIMATE from the device's counters {d['snn_pj'] / 1000:.4g} nJ/sample, "
            + ", ".join(f"{k} {v['ratio']:.3g}" for k, v in d["baselines"].items())]


def _best_lines(result: dict) -> list[str]:
    lines = []
    for task, per in result["best"].items():
        for baseline, b in per.items():
            lines.append(f"{task} vs {baseline}: {b['verdict']}")
        event = per.get("ann_lowbit", {})
        if "meets_energy" in event:
            goal = event["meets_accuracy"] and event["meets_energy"] and event["fits_demo"]
            lines.append(f"{task} goal (accuracy >= {ACCURACY_GOAL}, <= 1/3 of ann_lowbit, "
                         f"fits demo): {'MET' if goal else 'NOT met'} by {event['label']}")
            if "device" in event:
                lines += _device_lines(event["device"])
    return lines


def describe(result: dict):
    """Human-readable lines: the table, the best trade-offs, the device check."""
    yield (f"energy ratios are SNN / baseline, ESTIMATES (45 nm table, Horowitz ISSCC "
           f"2014); {result['epochs']} epochs per point")
    yield from table(result)
    yield from _best_lines(result)
    for key in ("plot", "report"):
        if key in result:
            yield f"{key}: {result[key]}"


_MARKERS = {("digits", "rate"): "o", ("digits", "direct"): "s", ("digits", "delta"): "D",
            ("event-digits", "counts"): "^", ("event-digits", "spikes"): "v"}
_COLORS = {"digits": "C0", "event-digits": "C3"}


def plot(result: dict, path) -> None:
    """The Pareto plot: accuracy vs the energy ratio against ``ann_lowbit`` (log),
    one marker per task/encoding, each task's frontier joined, the break-even
    (1) and the goal (1/3) ratios and the accuracy goal marked."""
    from .report import _plt

    plt = _plt()
    rows = result["results"]
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    seen = set()
    for r in rows:
        key = (r["task"], r["encoding"])
        ax.scatter(r["baselines"]["ann_lowbit"]["ratio"], r["accuracy"],
                   marker=_MARKERS.get(key, "x"), color=_COLORS.get(r["task"], "k"), s=55,
                   label=None if key in seen else f"{r['task']} / {r['encoding']}", zorder=3)
        seen.add(key)
    keys = []
    for task, front in result["frontier"].items():
        pts = [(rows[i]["baselines"]["ann_lowbit"]["ratio"], rows[i]["accuracy"]) for i in front]
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post",
                color=_COLORS.get(task, "k"), alpha=0.6, label=f"{task} Pareto frontier")
        for k, i in enumerate(front):
            tag = f"{'E' if task == 'event-digits' else 'S'}{k + 1}"
            ax.annotate(tag, pts[k], textcoords="offset points", xytext=(6, 4), fontsize=8,
                        color=_COLORS.get(task, "k"))
            keys.append(f"{tag}: {rows[i]['label']}".replace("lambda", "λ").replace("rho", "ρ"))
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even (ratio 1)")
    ax.axvline(ENERGY_GOAL, color="green", linestyle=":", linewidth=1.2,
               label="goal: 1/3 of ann_lowbit")
    ax.axhline(ACCURACY_GOAL, color="green", linestyle="-.", linewidth=1,
               label=f"accuracy {ACCURACY_GOAL:.0%}")
    ax.set_xscale("log")
    ax.set_xlabel("SNN energy / ann_lowbit energy (estimate; ceil(log2(T+1))-bit ANN, "
                  "Yan et al.)")
    ax.set_ylabel("integer-model test accuracy")
    ax.set_title("Training for sparsity: accuracy vs estimated energy (upper left is better)")
    from matplotlib.ticker import FuncFormatter

    for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.text(1.03, 0.0, "frontier points:\n" + "\n".join(keys), transform=ax.transAxes,
            fontsize=7, va="bottom", ha="left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def report(result: dict, directory) -> Path:
    """``--plot DIR``: ``DIR/sparsity.csv`` (the table), ``DIR/sparsity.png`` (the
    Pareto plot) and ``DIR/report.md``.  Returns the report's path."""
    from .report import _out_dir

    directory = _out_dir(directory)
    write_csv(result, directory / "sparsity.csv")
    plot(result, directory / "sparsity.png")
    swept = sorted({r["label"].split(" lambda")[0] for r in result["results"]})
    lines = ["# spikeforge experiment: sparsity", "",
             f"Swept ({len(result['results'])} points, {result['epochs']} epochs each, seed "
             f"{result['seed']}, grid `{result['grid']}`): task x input encoding x T (x event "
             f"step q for the event digits) x activity penalty (lambda, target rate rho). "
             f"Configurations: {'; '.join(swept)}.", "",
             "**Energies are an ESTIMATE** (operation counts x per-operation energies of a "
             "45 nm table, M. Horowitz, ISSCC 2014), not a measurement. Ratios are SNN / "
             f"baseline; baselines: {'; '.join(f'`{k}` {v}' for k, v in BASELINES.items())} "
             f"({YAN}). The static digits' baselines make one dense pass per sample, the event "
             "digits' one per time bin (the column `/ann_lowbit 1-pass` is against a single "
             "pass on the summed frame, which sees no timing).", "",
             "## Results", "", *table(result), "", "## Best trade-off per baseline", "",
             *(f"- {line}" for line in _best_lines(result)), "",
             "## Pareto plot", "", "![accuracy vs energy ratio](sparsity.png)", "",
             "Table: [sparsity.csv](sparsity.csv)."]
    lines += ["", "## Why", "", *(f"- {line}" for line in why(result))]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def why(result: dict) -> list[str]:
    """Plain statements of what sets the ratios, from the measured rows."""
    out = []
    for task, per in result["best"].items():
        b = per["ann_lowbit"]
        r = result["results"][b["index"]]
        e = r["snn_energy_pj"]
        total = sum(e.values())
        parts = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(e.items(),
                                                                  key=lambda kv: -kv[1]))
        out.append(f"{task}, best vs ann_lowbit ({r['label']}): the SNN's energy is {parts} "
                   f"(synaptic work follows the {r['spikes_per_synapse']:.3g} spikes per "
                   f"synapse; neuron updates are paid for every neuron every step).")
        if not b["meets_accuracy"]:
            out.append(f"{task}: no point reached accuracy {ACCURACY_GOAL} (best "
                       f"{b['accuracy']:.4f}, at {b['ratio']:.3g} x ann_lowbit).")
        if b.get("meets_energy") is False:
            out.append(f"{task}: the best ratio at accuracy >= {ACCURACY_GOAL} is "
                       f"{b['ratio']:.3g}, above the goal of 1/3.")
    return out
