"""``spikeforge demo``: the main job, end to end, with no hardware.

Opens the device (by default a simulated board: the Verilator build of the SoC
top, served on a local TCP port), loads the shipped digits (intra-token: a
digit over virtual time steps) and recall (inter-token: an associative-memory
SSM over real token time) models, streams their test splits through it, and
reports per task the device's accuracy, the golden model's accuracy, whether
every output of every step of every sample (and every layer's state after each
sample) equals the golden model's, the throughput and the hardware counters.

The shipped models (``spikeforge/models/*.safetensors``) were made by
``spikeforge train digits`` and ``spikeforge train recall`` with their default
settings; ``--retrain`` trains fresh ones (about a minute) into the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["run", "describe", "TASKS", "shipped_model"]

TASKS = ("digits", "recall")
SHIPPED = Path(__file__).with_name("models")


def shipped_model(task: str) -> Path:
    return SHIPPED / f"{task}.safetensors"


def _model(task: str, retrain: bool, progress: bool):
    from .golden.modelfile import load_model, save_model
    from .golden.train import config_for, train
    from .sim.vsim import cache_dir

    path = shipped_model(task)
    if retrain or not path.exists():
        path = cache_dir("models") / f"{task}.safetensors"
        if retrain or not path.exists():
            net, meta = train(config_for(task), progress=progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(path, net, meta)
    return path, *load_model(path)


def run(url: str = "sim://demo", *, limit: int | None = None, retrain: bool = False,
        progress: bool = False, timeout: float = 2.0) -> dict:
    from .device import open as open_device
    from .evaluate import evaluate_on_device

    report: dict = {"device": url, "tasks": {}}
    start = time.monotonic()
    steps = 0
    with open_device(url, timeout=timeout, progress=progress) as dev:
        info = dev.info()
        report["device_info"] = {k: info.get(k) for k in ("version", "config_hash", "link")}
        for task in TASKS:
            path, net, meta = _model(task, retrain, progress)
            result = evaluate_on_device(dev, net, meta, limit=limit, progress=progress)
            result["model"] = str(path)
            report["tasks"][task] = result
            steps += result["samples"] * result["timesteps"]
        report["link"] = dev.registers()
    seconds = time.monotonic() - start
    report["seconds"] = seconds
    report["steps_per_second"] = steps / sum(t["seconds"] for t in report["tasks"].values())
    return report


def describe(r: dict):
    yield f"device {r['device']}"
    for task, t in r["tasks"].items():
        c = t["counters"]
        yield (f"  {task}: accuracy {t['accuracy_device']:.4f} on the device, "
               f"{t['accuracy_golden']:.4f} golden, {t['samples']} samples x "
               f"{t['timesteps']} steps, bit-exact: {t['bit_exact']}")
        clocks = c["step_cycles"] / max(1, c["steps"])
        yield (f"    {t['steps_per_second']:.0f} steps/s, {clocks:.0f} clocks per step "
               f"(hardware counters)")
    yield f"  {r['steps_per_second']:.0f} steps/s over all tasks, {r['seconds']:.1f} s in all"


def bench(url: str = "sim://demo", *, samples: int = 100) -> dict:
    """End-to-end throughput through a device (by default the simulated board over
    TCP): the first ``samples`` test samples of each shipped model, every one
    checked against the golden model (wall-clock figures: they vary with load).
    On a simulated board, ``sim_clocks_per_second`` is its own simulation speed
    over the whole run (the time spent ticking, not waiting for the host)."""
    from urllib.parse import urlparse

    from .device import Device
    from .device import open as open_device
    from .evaluate import evaluate_on_device
    from .sim.simboard import SimBoard
    from .transport import SerialTransport

    out: dict = {"device": url}
    parsed = urlparse(url)
    board = None
    if parsed.scheme == "sim" and not parsed.query:
        board = SimBoard((parsed.netloc + parsed.path).strip("/") or "demo", stats=True).start()
    try:
        with (Device(SerialTransport(board.url)) if board else open_device(url)) as dev:
            for task in TASKS:
                _, net, meta = _model(task, False, False)
                r = evaluate_on_device(dev, net, meta, limit=samples, membranes=False)
                out[task] = {k: r[k] for k in ("samples", "timesteps", "samples_per_second",
                                                "steps_per_second", "bit_exact")}
                out[task]["clocks_per_step"] = (r["counters"]["step_cycles"]
                                                / r["counters"]["steps"])
        if board is not None:
            board.session()
            out["sim_clocks_per_second"] = board.sim_speed
    finally:
        if board is not None:
            board.close()
    return out


def sequence_bench(*, sequences: int = 8, length: int = 256) -> dict:
    """The shipped character language model (``docs/lm.md``) per token: clocks by the
    core's clock model on the simulated board's configuration for it (``charlm``)
    and on each board with an SSM unit, and its energy per token beside a
    transformer with a KV cache of the same width at contexts 64, 256 and 1024 (an
    ESTIMATE, :mod:`.golden.tokenenergy`), on ``sequences`` stretches of
    ``length`` held-out characters.

    The clock model is the core's own count when nothing holds its output back; on
    a device the command engine takes 9 clocks per output record (64 per token
    here), which can hold the core back (the device's counters count that)."""
    import torch

    from .boards.defs import BOARDS
    from .boards.fit import check_fit, sample_clocks
    from .contract.timing import COMPACT
    from .golden import chardata
    from .golden.energy import counts_from_trace
    from .golden.modelfile import load_model
    from .golden.tokenenergy import token_energy
    from .sim.rtl import config_named

    net, _ = load_model(shipped_model("charlm"))
    ids = chardata.split()["heldout"][:sequences * length].reshape(sequences, length)
    x = torch.nn.functional.one_hot(ids.T, net.input_size).to(torch.int64)  # [T, B, D]
    trace = net.run(x)
    # name -> (configuration, timing profile, clock in MHz or None)
    targets = {"sim (charlm)": (config_named("charlm"), COMPACT, None)}
    targets.update((b.name, (b.config, b.timing, b.target_mhz)) for b in BOARDS.values()
                   if b.config.has_ssm and check_fit(net, b.config)["fits"])
    clocks = {}
    for name, (config, timing, mhz) in targets.items():
        per_token = float(sample_clocks(net, x, trace, config, timing).double().mean()) / length
        clocks[name] = {"clocks_per_token": per_token,
                        **({"us_per_token": per_token / mhz} if mhz else {})}
    return {"model": "charlm (docs/lm.md)", "tokens": sequences * length, "clocks": clocks,
            "energy": token_energy(net, counts_from_trace(net, x, trace))}
