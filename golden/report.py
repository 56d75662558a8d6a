"""Plots and a one-page Markdown report per run (``--plot DIR``).

:func:`sample_figures` draws a spike raster and membrane traces of one sample;
:func:`energy_figure` the estimate of ``golden/energy.py`` (SNN vs dense ANN by
category); :func:`accuracy_vs_t_figure` and :func:`energy_vs_accuracy_figure`
the sweeps.  :func:`write_report` writes ``report.md`` linking the PNGs next to
it, with the summary numbers and the energy table; any command (``eval``,
``experiment``, ``run``) can call it with its own summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .integer import Network, Trace

__all__ = ["sample_figures", "energy_figure", "accuracy_vs_t_figure",
           "energy_vs_accuracy_figure", "write_report"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _out_dir(directory) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--plot {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def sample_figures(net: Network, trace: Trace, directory, *, sample: int = 0,
                   neurons: int = 8, prefix: str = "") -> list[tuple[str, str]]:
    """Spike raster (every spiking layer) and membrane traces (the first ``neurons``
    of every LIF layer) of ``sample`` of a recorded run.  ``trace``: anything with
    ``spikes`` and ``membranes`` dicts of ``[T, B, size]`` tensors (a golden
    :class:`Trace`, or a device run's).  Returns ``(title, file)`` pairs."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    directory = _out_dir(directory)
    lif = [layer for layer in net.layers if layer.kind == "lif"]
    spiking = [layer for layer in lif if layer.spiking]
    figures = []
    if spiking:
        fig, axes = plt.subplots(len(spiking), 1, figsize=(7, 1.2 + 1.6 * len(spiking)),
                                 squeeze=False, sharex=True)
        for ax, layer in zip(axes[:, 0], spiking, strict=True):
            s = trace.spikes[layer.name][:, sample]
            t, n = torch.nonzero(s, as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), marker="|", s=40, color="k")
            ax.set_ylim(-0.5, layer.size - 0.5)
            ax.set_ylabel(f"{layer.name}\nneuron")
        axes[-1, 0].set_xlabel("time step")
        axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, 0].set_title(f"spike raster, sample {sample}")
        fig.tight_layout()
        name = f"{prefix}raster.png"
        fig.savefig(directory / name, dpi=100)
        plt.close(fig)
        figures.append(("Spike raster", name))
    fig, axes = plt.subplots(len(lif), 1, figsize=(7, 1.2 + 1.8 * len(lif)), squeeze=False,
                             sharex=True)
    for ax, layer in zip(axes[:, 0], lif, strict=True):
        u = trace.membranes[layer.name][:, sample, :neurons]
        for i in range(u.shape[1]):
            ax.plot(u[:, i].numpy(), lw=1)
        if layer.spiking:
            ax.axhline(int(layer.theta[:neurons].max()), color="grey", ls=":", lw=1)
        ax.set_ylabel(f"{layer.name}\nu (int)")
    axes[-1, 0].set_xlabel("time step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_title(f"membranes u[t] after reset, first {neurons} neurons, sample {sample}")
    fig.tight_layout()
    name = f"{prefix}membranes.png"
    fig.savefig(directory / name, dpi=100)
    plt.close(fig)
    figures.append(("Membrane traces", name))
    return figures


def _baselines(energy: dict) -> dict:
    """The estimate's baselines (an estimate of before the baselines: its dense ANN)."""
    return energy.get("baselines") or {"ann_int8": {**energy["ann"], "ratio": energy["ratio"]}}


def energy_figure(energy: dict, directory, *, name: str = "energy.png") -> tuple[str, str]:
    """Stacked bars of the estimated energy per sample, SNN vs each baseline (dense
    int8 ANN, ceil(log2(T+1))-bit ANN, zero-skipping ANN); beside them the SNN's
    estimate vs its firing rate (``E_fixed + E_spike * r / r0``, the estimate's
    break-even model) against each baseline, break-even rates marked."""
    plt = _plt()
    directory = _out_dir(directory)
    baselines = _baselines(energy)
    sweep = energy.get("firing_rate") is not None and energy["snn"].get("spike_driven_pj")
    fig, axes = plt.subplots(1, 2 if sweep else 1, figsize=(11 if sweep else 6, 4.2),
                             squeeze=False)
    ax = axes[0, 0]
    bars = [("SNN", energy["snn"])] + list(baselines.items())
    colors = {}
    for x, (key, block) in enumerate(bars):
        bottom = 0.0
        for part, value in block["energy_pj"].items():
            new = part not in colors
            color = colors.setdefault(part, f"C{len(colors)}")
            ax.bar(x, value, bottom=bottom, color=color, label=part if new else None)
            bottom += value
        if key != "SNN":
            ax.annotate(f"SNN/ANN {block['ratio']:.3g}", (x, bottom), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(range(len(bars)), [k.replace("_", "\n", 1) for k, _ in bars], fontsize=8)
    ax.set_ylabel("estimated energy per sample (pJ)")
    ax.set_title(f"ESTIMATE, {energy['source']['process']}", fontsize=9)
    ax.legend(fontsize=7)
    if sweep:
        _break_even_axes(axes[0, 1], energy, baselines)
    fig.tight_layout()
    fig.savefig(directory / name, dpi=100)
    plt.close(fig)
    return ("Energy estimate", name)


def _break_even_axes(ax, energy: dict, baselines: dict) -> None:
    r0, snn = energy["firing_rate"], energy["snn"]
    rates = [r0] + [b["break_even_firing_rate"] for b in baselines.values()
                    if b.get("break_even_firing_rate") is not None]
    top = 1.25 * max(rates) if max(rates) > 0 else 1.0
    ax.plot([0, top], [snn["fixed_pj"], snn["fixed_pj"] + snn["spike_driven_pj"] * top / r0],
            "k-", label="SNN estimate")
    ax.plot([r0], [snn["total_pj"]], "ko")
    ax.annotate(f"measured r0 = {r0:.3g}", (r0, snn["total_pj"]), fontsize=7,
                xytext=(4, -10), textcoords="offset points")
    for (key, b), color, style in zip(baselines.items(), ("C6", "C8", "C9"),
                                      ("--", "-.", ":"), strict=False):
        r = b.get("break_even_firing_rate")
        ax.axhline(b["total_pj"], color=color, ls=style, lw=1.2,
                   label=f"{key} {b['total_pj']:.3g} pJ: break-even r = "
                         f"{'n/a' if r is None else f'{r:.3g}'}")
        if r:
            ax.axvline(r, color=color, ls=style, lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("firing rate r (spikes per neuron per step)")
    ax.set_ylabel("estimated energy per sample (pJ)")
    ax.set_title("SNN vs firing rate (ESTIMATE)", fontsize=9)
    ax.legend(fontsize=7)


def accuracy_vs_t_figure(rows: list[dict], directory, *,
                         name: str = "accuracy_vs_t.png") -> tuple[str, str]:
    """``rows``: ``{"timesteps", "accuracy"}`` per point."""
    plt = _plt()
    directory = _out_dir(directory)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["timesteps"] for r in rows], [r["accuracy"] for r in rows], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("integer-model accuracy")
    ax.set_title("accuracy vs T")
    fig.tight_layout()
    fig.savefig(directory / name, dpi=100)
    plt.close(fig)
    return ("Accuracy vs T", name)


def energy_vs_accuracy_figure(rows: list[dict], directory, *,
                              name: str = "energy_vs_accuracy.png") -> tuple[str, str]:
    """``rows``: ``{"energy_pj", "accuracy", "label"}`` per point (energy per sample)."""
    plt = _plt()
    directory = _out_dir(directory)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["energy_pj"] for r in rows], [r["accuracy"] for r in rows], "o-")
    for r in rows:
        ax.annotate(str(r.get("label", "")), (r["energy_pj"], r["accuracy"]), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("estimated energy per sample (pJ, ESTIMATE)")
    ax.set_ylabel("integer-model accuracy")
    ax.set_title("energy vs accuracy")
    fig.tight_layout()
    fig.savefig(directory / name, dpi=100)
    plt.close(fig)
    return ("Energy vs accuracy", name)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value)[:200] + "`"
    return str(value)


def write_report(directory, *, title: str, summary: dict, energy: dict | None = None,
                 figures: list[tuple[str, str]] = (), notes: list[str] = ()) -> Path:
    """Write ``DIR/report.md``: the summary table, the energy estimate (clearly
    labelled, with its source) and the figures (PNG files in ``DIR``)."""
    directory = _out_dir(directory)
    lines = [f"# {title}", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
    if energy is not None:
        lines += _energy_lines(energy)
    for caption, name in figures:
        lines += ["", f"## {caption}", "", f"![{caption}]({name})"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _energy_lines(energy: dict) -> list[str]:
    """The report's energy section: the SNN and every baseline by category, the
    ratios, the firing rate and the break-even rates, the SNN's operations."""
    snn, ann, baselines = energy["snn"], energy["ann"], _baselines(energy)
    lines = ["", "## Energy (estimate)", "",
             f"**{energy['label']}.** Per-operation energies: {energy['source']['citation']}"
             f" ({energy['source']['process']}). Counts from: {energy['counts_source']}, "
             f"{energy['samples']} samples, T={energy['timesteps']}.", "",
             "| per sample | SNN (event-driven) | " + " | ".join(baselines) + " |",
             "|---|---|" + "---|" * len(baselines)]
    parts = sorted(set(snn["energy_pj"]).union(*(b["energy_pj"] for b in baselines.values())))
    for p in parts:
        lines.append(f"| {p} (pJ) | {_fmt(snn['energy_pj'].get(p, 0.0))} | " + " | ".join(
            _fmt(b["energy_pj"].get(p, 0.0)) for b in baselines.values()) + " |")
    lines.append(f"| **total (pJ)** | **{_fmt(snn['total_pj'])}** | " + " | ".join(
        f"**{_fmt(b['total_pj'])}**" for b in baselines.values()) + " |")
    lines.append("| SNN / baseline | | " + " | ".join(
        _fmt(b["ratio"]) for b in baselines.values()) + " |")
    if "firing_rate" in energy:
        lines.append("| break-even firing rate | " + _fmt(energy["firing_rate"]) + " (measured) | "
                     + " | ".join(_fmt(b["break_even_firing_rate"]) for b in baselines.values())
                     + " |")
    lines += ["", f"Baselines: the same layers and integer weights, non-spiking, {ann['passes']} "
              f"pass(es) per sample, {ann['macs']} dense MACs; "
              + "; ".join(f"{k}: {b.get('description', 'dense ANN')}"
                          for k, b in baselines.items()) + "."]
    skip = baselines.get("ann_zero_skip")
    if skip is not None:
        lines += ["", f"Zero-skipping ANN: {_fmt(skip['macs_skipped'])} of the MACs skipped; "
                  f"zeros {skip['zeros_from']}."]
    if "firing_rate" in energy:
        lines += ["", "Break-even firing rate: the firing rate r (spikes per neuron per step, "
                  "input spikes included for a spike input) at which the SNN's estimate "
                  "E_fixed + E_spike * r / r0 equals the baseline's "
                  f"(E_fixed {_fmt(snn['fixed_pj'])} pJ, E_spike {_fmt(snn['spike_driven_pj'])} "
                  f"pJ at r0 = {_fmt(energy['firing_rate'])}; 0: the SNN's fixed cost alone "
                  f"exceeds the baseline). Per source: {_fmt(energy['firing_rates'])}."]
    lines += ["", f"Against a float32 dense network ({_fmt(ann['fp32_total_pj'])} pJ): "
              f"**{_fmt(energy['ratio_fp32'])}**.", "",
              "| SNN operations per sample | count |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in snn["per_sample"].items()]
    return lines
