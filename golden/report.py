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


def energy_figure(energy: dict, directory, *, name: str = "energy.png") -> tuple[str, str]:
    """Stacked bars of the estimated energy per sample: SNN vs the dense ANN."""
    plt = _plt()
    directory = _out_dir(directory)
    fig, ax = plt.subplots(figsize=(6, 4))
    for x, key in enumerate(("snn", "ann")):
        bottom = 0.0
        for part, value in energy[key]["energy_pj"].items():
            ax.bar(x, value, bottom=bottom, label=f"{key.upper()} {part}")
            bottom += value
    ax.set_xticks([0, 1], ["SNN (event-driven)", "dense ANN (MACs)"])
    ax.set_ylabel("estimated energy per sample (pJ)")
    ax.set_title(f"ESTIMATE, {energy['source']['process']}: SNN/ANN = {energy['ratio']:.3g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / name, dpi=100)
    plt.close(fig)
    return ("Energy estimate", name)


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
        snn, ann = energy["snn"], energy["ann"]
        lines += ["", "## Energy (estimate)", "",
                  f"**{energy['label']}.** Per-operation energies: {energy['source']['citation']}"
                  f" ({energy['source']['process']}). Counts from: {energy['counts_source']}, "
                  f"{energy['samples']} samples, T={energy['timesteps']}.", "",
                  "| per sample | SNN (event-driven) | dense ANN |", "|---|---|---|"]
        parts = sorted(set(snn["energy_pj"]) | set(ann["energy_pj"]))
        lines += [f"| {p} (pJ) | {_fmt(snn['energy_pj'].get(p, 0.0))} | "
                  f"{_fmt(ann['energy_pj'].get(p, 0.0))} |" for p in parts]
        lines += [f"| **total (pJ)** | **{_fmt(snn['total_pj'])}** | **{_fmt(ann['total_pj'])}** |",
                  "", f"SNN / ANN energy ratio: **{_fmt(energy['ratio'])}** "
                  f"(ANN: {ann['passes']} dense pass(es), {ann['macs']} MACs per sample, the "
                  f"same integer weights); against a float32 dense network "
                  f"({_fmt(ann['fp32_total_pj'])} pJ): **{_fmt(energy['ratio_fp32'])}**.", "",
                  "| SNN operations per sample | count |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in snn["per_sample"].items()]
    for caption, name in figures:
        lines += ["", f"## {caption}", "", f"![{caption}]({name})"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
