"""The ``Device`` API: load a quantized model onto a device and stream inference.

::

    import spikeforge
    with spikeforge.open("sim://") as dev:          # or "/dev/ttyUSB1", "socket://...",
        dev.load("digits.safetensors")              #    "xdma:///dev/xdma0"
        result = dev.run(x)                         # x: [T, D] or [T, B, D] integers
                                                    #    (or floats / bools holding them)
        result.outputs                              # [T, B, out], as the golden model's

The same code drives every transport (:mod:`.transport`); the wire protocol is
:mod:`.contract.protocol` (with ``.framing`` and ``.payloads``), the device's side of
it ``docs/device.md``.

* :meth:`Device.load` compiles the network for the device's configuration
  (from INFO) and refuses a model that does not fit *before anything is
  written*, then writes the image, reads every word back and compares
  (:class:`~.errors.VerifyError` on a difference), and resets the state.
* :meth:`Device.run` runs samples; each sample of a batch starts from a reset
  state, as in the golden model.  Steps are sent in RUNs sized so that no reply
  can exceed the protocol's payload limit; RUN and RESET are stop-and-wait, so a
  retried RUN is answered from the device's reply cache and never applied twice.
* :meth:`Device.stream` yields each sample's result as soon as it is back.
* Requests are sized for the link: on a clean one a WRITE holds up to 127
  words, a READ 128 and a RUN as many steps as its reply can hold; on a noisy
  one each request and its reply together hold at most :meth:`Device.frame_budget`
  bytes, so that most get through at the first attempt.
  :meth:`Device.link_stats` reports the budget and the client's retry counts.
"""

from __future__ import annotations

import json
import math
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .client import Client
from .contract.info import ENGINE_BASE, REGISTERS, config_hash
from .contract.payloads import (
    MAX_READ_WORDS,
    MAX_WRITE_WORDS,
    RUN_COUNT_FORMAT,
    RUN_EVENT_FORMAT,
    RUN_RECORD_FORMAT,
    WORD_FORMAT,
    WRITE_HEADER_FORMAT,
    pack_read,
    pack_run,
    pack_write,
    unpack_read_reply,
    unpack_run_reply,
)
from .contract.protocol import MAX_PAYLOAD, Command
from .errors import DeviceError, VerifyError
from .golden.data import as_integer_tensor, check_range
from .transport import Transport, open_transport

__all__ = ["Device", "open", "SampleResult", "RunResult", "config_hash", "ENGINE_BASE",
           "ENGINE_REGISTERS", "SURVIVAL"]

ENGINE_REGISTERS = tuple(name.lower() for name in REGISTERS)
"""The command engine's registers, in address order from ``ENGINE_BASE``."""

SURVIVAL = 0.75
"""The share of requests (with their replies) sized to get through at the first
attempt on a noisy link (:meth:`Device.frame_budget`)."""
_FRAME = 8       # bytes of a frame besides its payload: header, CRC, COBS code, delimiter
_ADDRESSED = 2 * _FRAME + struct.calcsize(WRITE_HEADER_FORMAT)  # WRITE/READ + reply, no words


@dataclass
class SampleResult:
    """One sample's results: per step the output layer's ``outputs`` (spikes of a
    spiking layer, else its values: what the golden ``Trace.outputs`` holds),
    ``values`` (membranes / y) and ``spikes``, as ``[T, out]`` int64 tensors; and
    ``membranes`` (every layer's state after the last step) when asked for."""

    outputs: torch.Tensor
    values: torch.Tensor
    spikes: torch.Tensor
    membranes: dict[str, list[int]] | None = None


@dataclass
class RunResult:
    """A batch: ``outputs``, ``values``, ``spikes`` as ``[T, B, out]``; ``membranes``
    per sample when asked for."""

    outputs: torch.Tensor
    values: torch.Tensor
    spikes: torch.Tensor
    membranes: list[dict[str, list[int]]] | None = None


def _runs(addresses_words: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """Sorted ``(address, word)`` pairs cut into runs of consecutive addresses."""
    out: list[tuple[int, list[int]]] = []
    for addr, word in addresses_words:
        if out and out[-1][0] + len(out[-1][1]) == addr:
            out[-1][1].append(word)
        else:
            out.append((addr, [word]))
    return out


class Device:
    """A device behind ``transport`` (see the module docstring).

    ``timeout``/``retries``/``window`` go to the protocol :class:`~.client.Client`.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 8,
                 window: int = 8, progress: bool = False):
        self.transport = transport
        self.client = Client(transport, timeout=timeout, retries=retries, window=window)
        self.progress = progress
        self._info: dict | None = None
        self._config = None
        self.net = None
        self.image = None
        self.meta: dict = {}

    # ---------------------------------------------------------------- basics
    @property
    def url(self) -> str:
        return self.transport.url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.transport.close()

    def frame_budget(self) -> float:
        """The bytes a request and its reply may hold together: ``ln(1 / SURVIVAL)
        / lambda`` with ``lambda`` the client's estimate of the link's error rate
        per byte (:meth:`~.client.Client.error_rate`), so that a share
        ``SURVIVAL`` gets through at the first attempt; ``inf`` while no frame
        from the device has been damaged lately (the protocol's limits alone).
        Read as each request is cut, so sizes follow the link."""
        rate = self.client.error_rate()
        return math.log(1 / SURVIVAL) / rate if rate else math.inf

    def _words(self, most: int) -> int:
        """Words per WRITE or READ: ``most``, or fewer within the frame budget."""
        fit = (self.frame_budget() - _ADDRESSED) // struct.calcsize(WORD_FORMAT)
        return int(max(1, min(most, fit)))

    def link_stats(self) -> dict:
        """The link so far: the client's ``requests``, ``retries`` (re-sends) and
        ``stray_replies``; ``damaged_replies`` (frames from the device the host's
        decoder dropped); ``error_rate`` (per byte, recent) and ``frame_budget``
        (bytes, None when unlimited) as the next request would be sized."""
        budget = self.frame_budget()
        return {**self.client.stats, "damaged_replies": sum(self.client.dropped.values()),
                "error_rate": self.client.error_rate(),
                "frame_budget": None if math.isinf(budget) else round(budget)}

    def info(self) -> dict:
        """The device's INFO (cached): build configuration, version, link."""
        if self._info is None:
            payload = self.client.request(Command.INFO)
            try:
                info = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DeviceError(f"{self.url}: INFO is not UTF-8 JSON: {exc}") from None
            if not isinstance(info, dict) or info.get("device") != "spikeforge":
                raise DeviceError(f"{self.url}: not a spikeforge device (INFO: {payload[:80]!r})")
            self._info = info
        return self._info

    @property
    def config(self):
        """The device's :class:`~spikeforge.contract.config.CoreConfig`, from INFO."""
        if self._config is None:
            from .contract.config import CoreConfig

            info = self.info()
            try:
                config = CoreConfig.from_dict(info["config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DeviceError(f"{self.url}: the device's configuration is not one this "
                                  f"host knows ({exc}); are host and device the same "
                                  f"version?") from None
            if info.get("config_hash") != config_hash(config):
                raise DeviceError(f"{self.url}: configuration hash {info.get('config_hash')!r} "
                                  f"does not match its fields ({config_hash(config)!r}); "
                                  f"are host and device the same version?")
            self._config = config
        return self._config

    def _progress(self, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="word", disable=not self.progress,
                    leave=False)

    # ------------------------------------------------------------ memory
    def _pieces(self, runs, most: int, sent: deque) -> Iterator[tuple[int, list[int]]]:
        """``runs`` cut into pieces of :meth:`_words` words, sized as the window
        takes them; each piece is also appended to ``sent``."""
        for addr, words in runs:
            pos = 0
            while pos < len(words):
                piece = (addr + pos, words[pos:pos + self._words(most)])
                sent.append(piece)
                yield piece
                pos += len(piece[1])

    def write(self, writes: list[tuple[int, int]], *, desc: str = "write") -> None:
        """Write ``(address, word)`` pairs (each address once; pipelined)."""
        sent: deque = deque()
        pieces = self._pieces(_runs(sorted(writes)), MAX_WRITE_WORDS, sent)
        with self._progress(len(writes), desc) as bar:
            requests = ((Command.WRITE, pack_write(addr, words)) for addr, words in pieces)
            for _reply in self.client.pipeline(requests):
                bar.update(len(sent.popleft()[1]))

    def read(self, addresses: list[int], *, desc: str = "read") -> list[int]:
        """The words at ``addresses`` (any order; pipelined)."""
        order = sorted(set(addresses))
        sent: deque = deque()
        pieces = self._pieces(_runs([(a, 0) for a in order]), MAX_READ_WORDS, sent)
        got: dict[int, int] = {}
        with self._progress(len(order), desc) as bar:
            requests = ((Command.READ, pack_read(addr, len(words))) for addr, words in pieces)
            for reply in self.client.pipeline(requests):
                addr, words = sent.popleft()
                for i, word in enumerate(unpack_read_reply(reply, len(words))):
                    got[addr + i] = word
                bar.update(len(words))
        return [got[a] for a in addresses]

    def registers(self) -> dict[str, int]:
        """The command engine's registers (flags and link statistics)."""
        words = self.read([ENGINE_BASE + i for i in range(len(ENGINE_REGISTERS))])
        return dict(zip(ENGINE_REGISTERS, words, strict=True))

    def reset(self) -> None:
        """Zero the neuron (and SSM) state, the event lists and the core's counters."""
        self.client.request(Command.RESET)

    # ------------------------------------------------------------- model
    def load(self, model, *, verify: bool = True) -> dict:
        """Load a model (a golden ``Network``, or the path of a model file).

        Raises :class:`~spikeforge.contract.config.FitError` (nothing written) if it
        does not fit the device, :class:`~.errors.VerifyError` if a word reads back
        differently.  Returns a summary (words written, verified)."""
        from .contract.compiler import compile_network
        from .golden.integer import Network

        meta: dict = {}
        if isinstance(model, (str, Path)):
            from .golden.modelfile import load_model

            net, meta = load_model(model)
        elif isinstance(model, Network):
            net = model
        else:
            raise TypeError(f"model must be a Network or a model file path, not {model!r}")
        image = compile_network(net, self.config)  # FitError before any write
        writes = dict(image.writes)  # the last write of an address wins
        self.net, self.image, self.meta = None, None, meta
        self.write(list(writes.items()), desc="load")
        if verify:
            addresses = sorted(writes)
            got = self.read(addresses, desc="verify")
            bad = [(a, writes[a], g) for a, g in zip(addresses, got, strict=True)
                   if writes[a] != g]
            if bad:
                a, w, g = bad[0]
                raise VerifyError(f"{self.url}: {len(bad)} of {len(addresses)} words read back "
                                  f"wrong after loading; first at address 0x{a:08x}: wrote "
                                  f"0x{w:x}, read 0x{g:x}")
        self.write([(ENGINE_BASE, 0)], desc="flags")
        self.reset()
        self.net, self.image = net, image
        return {"words": len(writes), "verified": verify}

    def _loaded(self):
        if self.net is None:
            raise DeviceError("no model is loaded on this device (call load() first)")
        return self.net, self.image

    def counters(self) -> dict:
        """The core's hardware counters: per layer name ``syn_cycles``,
        ``neuron_cycles``, ``events``, ``spikes``; and ``step_cycles``, ``steps``."""
        from .contract.config import COUNTERS, Region

        net, image = self._loaded()
        c = self.config
        n = len(COUNTERS)
        words = self.read([c.address(Region.COUNTERS, 0, i)
                           for i in range(n * c.max_layers + 2)])
        out: dict = {"layers": {}}
        for layer in net.layers:
            i = image.layer_index[layer.name]
            out["layers"][layer.name] = dict(zip(COUNTERS, words[i * n:(i + 1) * n], strict=True))
        out["step_cycles"], out["steps"] = words[n * c.max_layers:n * c.max_layers + 2]
        return out

    # ------------------------------------------------------------------ run
    def _reply_per_step(self) -> int:
        """Bytes of a RUN reply per step (the output layer's value records and the
        end record, after the step's count)."""
        net, _ = self._loaded()
        records = net.layer(net.output).out_size + 1
        return struct.calcsize(RUN_COUNT_FORMAT) + struct.calcsize(RUN_RECORD_FORMAT) * records

    def _steps_per_run(self) -> int:
        """The most steps whose RUN reply fits the payload limit."""
        return max(1, MAX_PAYLOAD // self._reply_per_step())

    def _chunks(self, steps: list[list[tuple[int, int]]]) -> Iterator[list]:
        """``steps`` cut into RUNs of at least one step and at most
        :meth:`_steps_per_run`, whose request fits the payload limit and which with
        its reply fits the frame budget (read as each RUN is cut)."""
        most, per_step = self._steps_per_run(), self._reply_per_step()
        head, per_event = struct.calcsize(RUN_COUNT_FORMAT), struct.calcsize(RUN_EVENT_FORMAT)
        chunk, size = [], head
        for events in steps:
            need = head + per_event * len(events)
            both = size + need + head + per_step * (len(chunk) + 1) + 2 * _FRAME
            if chunk and (len(chunk) == most or size + need > MAX_PAYLOAD
                          or both > self.frame_budget()):
                yield chunk
                chunk, size = [], head
            chunk.append(events)
            size += need
        if chunk:
            yield chunk

    def run_steps(self, steps: list[list[tuple[int, int]]]) -> list[list[int]]:
        """Run input steps (each a list of ``(index, value)`` events) from the current
        state; the raw output records of each step."""
        self._loaded()
        out = []
        for chunk in self._chunks(steps):
            reply = self.client.request(Command.RUN, pack_run(chunk))
            out += unpack_run_reply(reply, len(chunk))
        return out

    def _sample(self, x: torch.Tensor, reset: bool, membranes: bool) -> SampleResult:
        from .contract.harness import decode_membranes, decode_step, input_events, membrane_reads

        net, image = self._loaded()
        if reset:
            self.reset()
        steps = [input_events(row) for row in x.tolist()]
        decoded = [decode_step(r, net, image) for r in self.run_steps(steps)]
        values = torch.tensor([d["values"] for d in decoded], dtype=torch.int64)
        spikes = torch.tensor([d["out_spikes"] for d in decoded], dtype=torch.int64)
        spiking = getattr(net.layer(net.output), "spiking", False)
        result = SampleResult(outputs=spikes if spiking else values, values=values,
                              spikes=spikes)
        if membranes:
            result.membranes = decode_membranes(self.read(membrane_reads(net, image)),
                                                net, image)
        return result

    def _check_inputs(self, x: torch.Tensor, what: str, *, batch: bool) -> None:
        """The loaded model's rules for its input (as the golden model's), before
        anything is sent: the shape (time first) and each value's range."""
        net, _ = self._loaded()
        d = net.input_size
        if x.dim() not in ((2, 3) if batch else (2,)) or x.shape[-1] != d:
            expected = f"[T, {d}] or [T, B, {d}]" if batch else f"[T, {d}]"
            raise ValueError(f"{what} must be {expected} (time first), not {list(x.shape)}")
        if 0 in x.shape:
            raise ValueError(f"{what} of shape {list(x.shape)} hold no step or no sample")
        lo, hi = net.input_range()
        check_range(x, lo, hi, what, kind=f"the model's {net.input_kind} input range ")

    def stream(self, samples: Iterable, *, reset: bool = True,
               membranes: bool = False) -> Iterator[SampleResult]:
        """Run each sample (``[T, D]``), yielding its result as soon as it is back.
        Inputs as in :meth:`run`; a non-integer value of sample ``i`` is refused as
        ``samples[i][t, d] = 0.5 is not an integer``."""
        for i, x in enumerate(samples):
            x = as_integer_tensor(x, f"samples[{i}]")
            self._check_inputs(x, f"samples[{i}]", batch=False)
            yield self._sample(x, reset, membranes)

    def run(self, x, *, reset: bool = True, membranes: bool = False):
        """Run ``x``: ``[T, D]`` (one sample, a :class:`SampleResult`) or ``[T, B, D]``
        (a batch, each sample from a reset state; a :class:`RunResult`).  With
        ``reset=False`` a single sample continues from the current state.

        ``x``: a tensor, numpy array or nested list of integers, or of floats or
        bools whose values are all integers (snnTorch's ``spikegen`` hands out float
        0.0/1.0); time first.  Before anything is sent, a ValueError names a wrong
        shape (``inputs must be [T, D] or [T, B, 784] (time first), not [...]``), the
        first value that is not an integer (``inputs[3, 0, 17] = 0.5 is not an
        integer``) or outside the model's input range (``inputs[0, 1, 5] = 16 is
        outside the model's spike input range [0, 1]``)."""
        x = as_integer_tensor(x, "inputs")
        self._check_inputs(x, "inputs", batch=True)
        if x.dim() == 2:
            return self._sample(x, reset, membranes)
        results = [self._sample(x[:, b], True, membranes) for b in range(x.shape[1])]

        def stack(name):
            return torch.stack([getattr(r, name) for r in results], dim=1)

        return RunResult(outputs=stack("outputs"), values=stack("values"),
                         spikes=stack("spikes"),
                         membranes=[r.membranes for r in results] if membranes else None)


def open(url: str = "sim://", **kwargs) -> Device:  # noqa: A001 - spikeforge.open(url)
    """Open the device at ``url`` (see :mod:`.transport` for the URL forms)."""
    baudrate = kwargs.pop("baudrate", None)
    transport = open_transport(url, **({"baudrate": baudrate} if baudrate else {}))
    try:
        return Device(transport, **kwargs)
    except BaseException:
        transport.close()
        raise
