"""The paper's experiments, each a function returning one JSON-ready dict.

``timesteps``      digits (rate coding): integer-model accuracy and synaptic
                   operations per sample vs the number of virtual steps T.
``surrogate``      digits with a spiking (spike-count) readout, so every gradient
                   path crosses a spike: ``none`` vs the three surrogates, same
                   budget (epochs, seed, sizes).
``recall-length``  associative recall through the SSM: one model per decay mode
                   (fixed, selective) trained at length 32, evaluated at each length.
``sparsity``       static digits and event digits: accuracy vs spikes per synapse vs
                   estimated energy against each baseline, over input encodings, T and
                   activity penalties (:mod:`.sparsity`; outputs :mod:`.sparsityreport`).
``selectivity``    fixed vs selective decay on tasks that need selective state
                   (selective copying, key-overwrite recall, MQAR), vs sequence length
                   and state size (:mod:`.selectivity`; ``docs/selectivity.md``).
"""

from __future__ import annotations

from tqdm.auto import tqdm

from .tasks import recall
from .train import config_for, evaluate, train
from .twin import SURROGATES

__all__ = ["EXPERIMENTS", "run", "plot", "report", "describe"]

EXPERIMENTS = ("timesteps", "surrogate", "recall-length", "sparsity", "selectivity")
DEFAULT_TIMESTEPS = [1, 2, 4, 8, 16, 32]
DEFAULT_LENGTHS = [17, 24, 32, 48, 64, 96, 128]


def timesteps(*, timesteps=None, epochs=None, seed=0, progress=False) -> dict:
    results = []
    for t in tqdm(timesteps or DEFAULT_TIMESTEPS, desc="timesteps", disable=not progress):
        net, meta = train(config_for("digits", timesteps=t, epochs=epochs, seed=seed),
                          progress=progress)
        report = evaluate(net, meta)
        results.append({"timesteps": t, "accuracy": report["accuracy"],
                        "synops_per_sample": report["synops_per_sample"],
                        "energy": _energy(net, meta)})
    return {"experiment": "timesteps", "task": "digits", "encoding": "rate",
            "results": results}


def _energy(net, meta) -> dict:
    """The energy estimate (golden counts on the test split), summarised."""
    from .energy import counts_from_trace, estimate
    from .train import task_data

    x, _ = task_data(meta, "test")
    e = estimate(net, counts_from_trace(net, x, net.run(x)))
    return {"snn_pj_per_sample": e["snn"]["total_pj"], "ann_pj_per_sample": e["ann"]["total_pj"],
            "ratio": e["ratio"], "source": e["source"]["citation"],
            "process": e["source"]["process"], "label": e["label"]}


def surrogate(*, epochs=None, seed=0, progress=False, **_) -> dict:
    results, details = {}, {}
    for name in tqdm(SURROGATES, desc="surrogates", disable=not progress):
        net, meta = train(config_for("digits", surrogate=name, readout="spikes", epochs=epochs,
                                     seed=seed), progress=progress)
        results[name] = evaluate(net, meta)["accuracy"]
        details[name] = {"accuracy_float": meta["training"]["accuracy_float"]}
    return {"experiment": "surrogate", "task": "digits", "readout": "spikes",
            "chance": 0.1, "results": results, "details": details}


def recall_length(*, lengths=None, epochs=None, seed=0, progress=False, **_) -> dict:
    lengths = lengths or DEFAULT_LENGTHS
    results = []
    for mode in tqdm(("fixed", "selective"), desc="modes", disable=not progress):
        net, meta = train(config_for("recall", mode=mode, epochs=epochs, seed=seed),
                          progress=progress)
        for length in lengths:
            task_meta = dict(meta, length=length)
            results.append({"length": length, "mode": mode,
                            "accuracy": evaluate(net, task_meta)["accuracy"]})
    cfg = config_for("recall")
    probe = recall(1000, length=32, n_pairs=cfg.n_pairs, n_keys=cfg.n_keys,
                   n_values=cfg.n_values, seed=7)
    return {"experiment": "recall-length", "task": "recall", "trained_length": cfg.length,
            "n_pairs": cfg.n_pairs, "n_keys": cfg.n_keys, "n_values": cfg.n_values,
            "chance": probe.chance, "chance_in_context": probe.chance_in_context(),
            "results": results}


def _sparsity(**kwargs) -> dict:
    from . import sparsity

    return sparsity.run(**kwargs)


def _selectivity(**kwargs) -> dict:
    from . import selectivity

    return selectivity.run(**kwargs)


_RUNNERS = {"timesteps": timesteps, "surrogate": surrogate, "recall-length": recall_length,
            "sparsity": _sparsity, "selectivity": _selectivity}
_OPTIONS = {"timesteps": ("timesteps",), "lengths": ("recall-length", "selectivity"),
            "grid": ("sparsity",), "device": ("sparsity", "selectivity"),
            "device_samples": ("sparsity", "selectivity")}
"""Keyword arguments only some experiments take (dropped for the others)."""
CLI_OPTIONS = ("timesteps", "lengths", "epochs", "seed", "grid", "device", "device_samples")
"""The ``spikeforge experiment`` options passed to :func:`run`."""


def run(name: str, **kwargs) -> dict:
    if name not in _RUNNERS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    for key, owners in _OPTIONS.items():
        if name not in owners or kwargs.get(key) is None:
            kwargs.pop(key, None)   # (None: the experiment's own default)
    return _RUNNERS[name](**kwargs)


def describe(result: dict):
    """Human-readable lines for an experiment result."""
    name = result["experiment"]
    if name in ("sparsity", "selectivity"):
        yield from _module(name).describe(result)
        return
    if name == "timesteps":
        yield "T   accuracy  synops/sample"
        for r in result["results"]:
            yield f"{r['timesteps']:<3} {r['accuracy']:.4f}    {r['synops_per_sample']:.0f}"
    elif name == "surrogate":
        for k, v in result["results"].items():
            yield f"{k:<13} {v:.4f}"
    else:
        yield f"chance {result['chance']:.4f} (guessing among values in context: " \
              f"{result['chance_in_context']:.4f})"
        for r in result["results"]:
            yield f"{r['mode']:<10} length {r['length']:<4} accuracy {r['accuracy']:.4f}"
    if "plot" in result:
        yield f"plot: {result['plot']}"


def plot(result: dict, path) -> None:
    """Write a PNG plot of an experiment result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = result["experiment"]
    if name == "sparsity":
        return _module(name).plot(result, path)
    if name == "selectivity":  # (its first figure: accuracy vs sequence length)
        import shutil
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            first = _module(name).plot(result, tmp)[0]
            shutil.move(Path(tmp) / first, path)
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    if name == "timesteps":
        ts = [r["timesteps"] for r in result["results"]]
        ax.plot(ts, [r["accuracy"] for r in result["results"]], "o-", label="accuracy")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("virtual time steps T")
        ax.set_ylabel("integer-model test accuracy")
        ax2 = ax.twinx()
        ax2.plot(ts, [r["synops_per_sample"] for r in result["results"]], "s--", color="C1",
                 label="synaptic ops / sample")
        ax2.set_ylabel("synaptic ops per sample")
        fig.legend(loc="lower right")
        ax.set_title("digits: accuracy and work vs T")
    elif name == "surrogate":
        names = list(result["results"])
        ax.bar(names, [result["results"][n] for n in names])
        ax.axhline(result["chance"], color="grey", linestyle=":", label="chance")
        ax.set_ylabel("integer-model test accuracy")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("digits: surrogate gradients (spike-count readout)")
    else:
        for mode in ("fixed", "selective"):
            rows = [r for r in result["results"] if r["mode"] == mode]
            ax.plot([r["length"] for r in rows], [r["accuracy"] for r in rows], "o-",
                    label=f"{mode} decay")
        ax.axhline(result["chance"], color="grey", linestyle=":", label="chance")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("recall accuracy")
        ax.set_ylim(0, 1.05)
        ax.legend()
        ax.set_title(f"associative recall, {result['n_pairs']} pairs, trained at "
                     f"length {result['trained_length']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict, directory):
    """``--plot DIR``: the experiment's plot, accuracy vs T and energy vs accuracy
    (``timesteps``), and ``DIR/report.md``.  Returns the report's path."""
    from pathlib import Path

    from . import report as rep

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--plot {directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    name = result["experiment"]
    if name in ("sparsity", "selectivity"):
        return _module(name).report(result, directory)
    plot(result, directory / f"{name}.png")
    figures = [(f"Experiment {name}", f"{name}.png")]
    summary = {k: v for k, v in result.items() if k not in ("results", "details")}
    notes = []
    if name == "timesteps":
        rows = result["results"]
        figures.append(rep.accuracy_vs_t_figure(rows, directory))
        if all("energy" in r for r in rows):
            figures.append(rep.energy_vs_accuracy_figure(
                [{"energy_pj": r["energy"]["snn_pj_per_sample"], "accuracy": r["accuracy"],
                  "label": f"T={r['timesteps']}"} for r in rows], directory))
            notes.append(f"Energies are an ESTIMATE from operation counts "
                         f"({rows[0]['energy']['source']}, {rows[0]['energy']['process']}).")
        for r in rows:
            e = r.get("energy", {})
            summary[f"T={r['timesteps']}"] = (
                f"accuracy {r['accuracy']:.4f}, {r['synops_per_sample']:.0f} synops/sample"
                + (f", {e['snn_pj_per_sample']:.4g} pJ/sample (SNN/ANN {e['ratio']:.3g})"
                   if e else ""))
    else:
        summary["results"] = result["results"]
    return rep.write_report(directory, title=f"spikeforge experiment: {name}", summary=summary,
                            figures=figures, notes=notes)


def _module(name: str):
    """The module that describes, plots and reports experiment ``name``."""
    if name == "sparsity":
        from . import sparsityreport

        return sparsityreport
    from . import selectivity

    return selectivity
