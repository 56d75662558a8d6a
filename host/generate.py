"""``spikeforge generate MODEL --prompt TEXT``: text from the character language
model (:mod:`.golden.charlm`, docs/lm.md) on a device, one character at a time.

The prompt is fed to the device as one chunk of tokens, then each generated
character is fed back as the next token; the device keeps every layer's state
between calls (:class:`.stream.TokenStream`), so the context is the whole text so
far.  The golden model runs the same stream (:class:`.stream.GoldenStream`) and
every step's outputs (the readout's membranes) must equal the device's, bit for
bit; the first difference stops the run (exit 5).

The next character comes from the device's membranes ``o`` of the last step:
greedy (default) is ``argmax o`` (ties to the lowest index); ``--temperature T``
samples from ``softmax(o / (s T))`` with ``s = meta["logit_scale"]`` (the membranes'
scale, so ``T = 1`` is the distribution the bits per character are measured on),
drawn with a ``torch.Generator`` seeded by ``--seed`` (the same seed, the same text).

Characters print as they come; ``--json`` prints one JSON object at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .commands import EXIT_OK, UsageError

__all__ = ["add_parser", "cmd_generate", "check_charlm_meta", "prompt_ids", "choose"]

DEFAULT_CHARS = 200
DEFAULT_DEVICE = "sim://demo"


def add_parser(sub, common, *, positive_float, count) -> argparse.ArgumentParser:
    """Register ``generate`` on the ``spikeforge`` subparsers ``sub`` (``common`` adds
    the shared ``--json``/``--quiet``/``--progress``; ``positive_float`` and ``count``:
    the CLI's argument types)."""
    p = sub.add_parser("generate", help="generate text with the character language model "
                       "on a device, one character at a time, each step checked bit for bit "
                       "against the golden model")
    p.add_argument("model", type=Path, help="a charlm model file (host/models/charlm."
                                            "safetensors)")
    p.add_argument("--prompt", required=True, help="the text to start from (the model's "
                   "alphabet: docs/lm.md; upper case is folded to lower case)")
    p.add_argument("--chars", type=count, default=DEFAULT_CHARS,
                   help=f"characters to generate [{DEFAULT_CHARS}]")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (with --temperature) [0]")
    p.add_argument("--temperature", type=positive_float, metavar="T",
                   help="sample from softmax(logits / T) [greedy: the most likely character]")
    p.add_argument("--device", default=DEFAULT_DEVICE, metavar="URL",
                   help=f"sim://[CONFIG], a serial port, socket://HOST:PORT [{DEFAULT_DEVICE}]")
    p.add_argument("--timeout", type=positive_float, default=2.0,
                   help="seconds to wait for a reply before retrying [2]")
    common(p)
    p.set_defaults(func=cmd_generate)
    return p


def check_charlm_meta(net, meta: dict, path) -> None:
    """Raise ModelFileError unless ``meta`` describes a character model that ``net``
    can run: task ``charlm``, an alphabet of distinct characters, one per input and
    per output, and a positive finite logit scale."""
    from .golden.modelfile import ModelFileError

    if meta.get("task") != "charlm":
        raise ModelFileError(f"{path}: task={meta.get('task')!r}, not a character language "
                             f"model (task 'charlm')")
    alphabet = meta.get("alphabet")
    if not isinstance(alphabet, str) or not alphabet or len(set(alphabet)) != len(alphabet):
        raise ModelFileError(f"{path}: metadata alphabet={alphabet!r} is not a string of "
                             f"distinct characters")
    out = net.layer(net.output).out_size
    if not len(alphabet) == net.input_size == out:
        raise ModelFileError(f"{path}: the alphabet has {len(alphabet)} characters, the "
                             f"network {net.input_size} inputs and {out} outputs")
    scale = meta.get("logit_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or \
            not 0 < scale < float("inf"):
        raise ModelFileError(f"{path}: metadata logit_scale={scale!r} is not a positive number")


def prompt_ids(prompt: str, alphabet: str) -> list[int]:
    """The prompt as token ids: each character is a symbol of ``alphabet`` or is folded
    into one (:data:`.golden.chardata.FOLD`); UsageError naming every other character."""
    from .golden.chardata import FOLD

    if not prompt:
        raise UsageError("--prompt '' is empty; give at least one character")
    index = {c: i for i, c in enumerate(alphabet)}
    ids, bad = [], []
    for c in prompt:
        c2 = c if c in index else FOLD.get(c)
        if c2 in index:
            ids.append(index[c2])
        elif c not in bad:
            bad.append(c)
    if bad:
        names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad)
        s = "s" if len(bad) > 1 else ""
        raise UsageError(f"--prompt {prompt!r}: character{s} {names} {'are' if s else 'is'} "
                         f"not in the model's {len(alphabet)}-character alphabet {alphabet!r}")
    return ids


def choose(membrane: torch.Tensor, logit_scale: float, temperature: float | None,
           gen: torch.Generator) -> int:
    """The next token from the readout's membranes (module docstring)."""
    if temperature is None:
        return int(membrane.argmax())
    probs = torch.softmax(membrane.double() / (logit_scale * temperature), dim=0)
    return int(torch.multinomial(probs, 1, generator=gen))


def _mismatch(step: int, got, want) -> str:
    diff = (got.values != want.values).nonzero()
    where = f"first at row {int(diff[0, 0])}, output {int(diff[0, 1])}" if len(diff) else ""
    return (f"step {step}: the device's outputs differ from the golden model's ({where}); "
            f"stopped")


def cmd_generate(args) -> int:
    """Run ``generate`` (module docstring); exit 0 when every step was bit-exact."""
    from .device import open as open_device
    from .errors import DeviceError
    from .golden.modelfile import load_model
    from .stream import GoldenStream, TokenStream

    net, meta = load_model(args.model)
    check_charlm_meta(net, meta, args.model)
    alphabet, scale = meta["alphabet"], float(meta["logit_scale"])
    ids = prompt_ids(args.prompt, alphabet)
    gen = torch.Generator().manual_seed(args.seed)
    golden = GoldenStream(net)
    text, clocks, steps = [], 0, 0
    show = not args.json
    start = time.monotonic()
    with open_device(args.device, timeout=args.timeout) as dev:
        dev.load(net)
        stream = TokenStream(dev)
        if show:
            print("".join(alphabet[i] for i in ids), end="", flush=True)
        feed = ids
        for _ in range(args.chars):
            got, want = stream.feed(feed), golden.feed(feed)
            if not (torch.equal(got.outputs, want.outputs)
                    and torch.equal(got.values, want.values)):
                if show:
                    print(flush=True)
                raise DeviceError(_mismatch(steps + len(feed) - 1, got, want))
            steps += len(feed)
            clocks += got.clocks or 0
            token = choose(got.values[-1], scale, args.temperature, gen)
            text.append(alphabet[token])
            if show:
                print(alphabet[token], end="", flush=True)
            feed = [token]
        url = dev.url
    seconds = time.monotonic() - start
    report = {"model": str(args.model), "device": url, "prompt": args.prompt,
              "prompt_folded": "".join(alphabet[i] for i in ids), "text": "".join(text),
              "chars": len(text), "mode": "greedy" if args.temperature is None else "sample",
              "temperature": args.temperature, "seed": args.seed, "steps": steps,
              "bit_exact": True, "clocks_per_token": clocks / steps if steps else None,
              "seconds": round(seconds, 3),
              "chars_per_second": round(len(text) / seconds, 2) if seconds > 0 else None}
    if args.json:
        print(json.dumps(report))
    else:
        cpt = report["clocks_per_token"]
        print(f"\n-- {len(text)} characters from {url} ({steps} steps fed), every step "
              f"bit-exact against the golden model"
              + (f"; {cpt:.0f} core clocks per token" if cpt is not None else "")
              + f"; {seconds:.1f} s", flush=True)
    return EXIT_OK
