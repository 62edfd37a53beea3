"""Valid/ready stream driver and monitor for cocotb, and payload packing from Amaranth layouts.

The payload of an ``amaranth.lib.stream`` port is flattened to one vector ``<prefix>__payload``
in the generated Verilog. :func:`pack` / :func:`unpack` convert between that integer and Python
values following the Amaranth shape of the payload:

* ``signed(n)`` / ``unsigned(n)`` -> ``int``;
* ``data.ArrayLayout`` -> ``list``;
* ``data.StructLayout`` -> ``dict`` (missing fields pack as 0).

Handshake timing (simulator independent): both classes sample ``valid``/``ready`` at the falling
edge of the clock (values settled, stable until the next rising edge) and change their outputs
just after the rising edge. A transfer happens at every rising edge where ``valid & ready``.
The monitor checks the stream contract every cycle (:class:`~equispike.sim.contract.StreamChecker`).
"""

from __future__ import annotations

import random
from collections import deque

from amaranth.hdl import Shape
from amaranth.lib import data

from .contract import TAIL_CYCLES, StreamChecker

__all__ = ["pack", "unpack", "as_int", "StreamDriver", "StreamMonitor"]


def _shape(shape):
    if isinstance(shape, data.Layout):
        return shape
    return Shape.cast(shape)


def pack(shape, value) -> int:
    """Integer bit pattern of ``value`` laid out as Amaranth ``shape``."""
    shape = _shape(shape)
    if isinstance(shape, data.ArrayLayout):
        if len(value) != shape.length:
            raise ValueError(f"array of {shape.length} elements expected, got {len(value)}")
        w = data.Layout.cast(shape).size // shape.length if shape.length else 0
        out = 0
        for i, v in enumerate(value):
            out |= pack(shape.elem_shape, v) << (i * w)
        return out
    if isinstance(shape, data.StructLayout):
        out = 0
        for name, field in shape:
            v = value.get(name, 0)
            out |= pack(field.shape, v) << field.offset
        return out
    shape = Shape.cast(shape)
    v = int(value)
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (
        0, (1 << shape.width) - 1)
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit {shape}")
    return v & ((1 << shape.width) - 1)


def unpack(shape, bits: int):
    """Inverse of :func:`pack`."""
    shape = _shape(shape)
    if isinstance(shape, data.ArrayLayout):
        w = data.Layout.cast(shape).size // shape.length if shape.length else 0
        return [unpack(shape.elem_shape, (bits >> (i * w)) & ((1 << w) - 1))
                for i in range(shape.length)]
    if isinstance(shape, data.StructLayout):
        return {name: unpack(field.shape, (bits >> field.offset) & ((1 << field.width) - 1))
                for name, field in shape}
    shape = Shape.cast(shape)
    bits &= (1 << shape.width) - 1
    if shape.signed and bits >> (shape.width - 1):
        bits -= 1 << shape.width
    return bits


def as_int(value) -> int:
    """Unsigned integer of a cocotb signal value (``Logic`` of a 1-bit port or ``LogicArray``)."""
    if hasattr(value, "to_unsigned"):
        return value.to_unsigned()
    return int(value)


def _port(dut, prefix, name):
    return getattr(dut, f"{prefix}__{name}")


class StreamDriver:
    """Drives ``<prefix>__valid``/``__payload`` of a DUT input stream from a queue.

    Parameters
    ----------
    dut, clk:
        cocotb handles of the top level and its clock.
    prefix:
        Port name prefix, e.g. ``"i_stream"``.
    shape:
        Amaranth shape of the payload (used by :func:`pack`); ``None`` sends raw integers.
    idle_prob:
        Probability of inserting an idle cycle (valid low) before each beat.
    seed:
        Seed of the private random generator (reproducible stimulus).
    """

    def __init__(self, dut, clk, prefix, shape=None, *, idle_prob=0.0, seed=0):
        import cocotb

        self.valid = _port(dut, prefix, "valid")
        self.ready = _port(dut, prefix, "ready")
        self.payload = _port(dut, prefix, "payload")
        self.clk, self.shape, self.idle_prob = clk, shape, idle_prob
        self.rng = random.Random(seed)
        self.queue: deque = deque()
        self.sent = 0
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, item) -> None:
        """Queue one beat (a value of ``shape``)."""
        self.queue.append(item)

    def idle(self) -> bool:
        return not self.queue and not self._busy

    async def wait_idle(self) -> None:
        from cocotb.triggers import RisingEdge

        while not self.idle():
            await RisingEdge(self.clk)

    def stop(self) -> None:
        self._task.cancel()

    _busy = False

    async def _run(self):
        from cocotb.triggers import FallingEdge, RisingEdge

        current = None
        while True:
            await FallingEdge(self.clk)
            fire = current is not None and bool(as_int(self.ready.value))
            await RisingEdge(self.clk)
            if fire:
                current = None
                self.sent += 1
            if current is None and self.queue and self.rng.random() >= self.idle_prob:
                current = self.queue.popleft()
                bits = current if self.shape is None else pack(self.shape, current)
                self.payload.value = bits
            self._busy = current is not None
            self.valid.value = int(current is not None)


class StreamMonitor:
    """Accepts beats of a DUT output stream with random back-pressure, checking its contract.

    ``ready`` is low with probability ``backpressure_prob`` each cycle. Received beats are
    unpacked with ``shape`` (raw integers when ``None``), appended to :attr:`items` and passed to
    ``callback`` if given. Every cycle the stream is checked by :attr:`checker` (a
    :class:`~equispike.sim.contract.StreamChecker` with ``expected`` beats and ``check_beat``):
    valid held until the transfer, payload stable while stalled, no beat after the last
    expected one. The first violation stops the monitor and is raised in the test by
    :meth:`wait_for`, :meth:`check` and :meth:`finish`.
    """

    def __init__(self, dut, clk, prefix, shape=None, *, backpressure_prob=0.0, seed=0,
                 callback=None, expected: int | None = None, check_beat=None):
        import cocotb

        self.valid = _port(dut, prefix, "valid")
        self.ready = _port(dut, prefix, "ready")
        self.payload = _port(dut, prefix, "payload")
        self.clk, self.shape, self.p = clk, shape, backpressure_prob
        self.rng = random.Random(seed)
        self.items: deque = deque()
        self.callback = callback
        self.received = 0
        self.checker = StreamChecker(prefix, expected, check_beat)
        self.error: BaseException | None = None
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        self._task.cancel()

    def check(self) -> None:
        """Raises the first contract violation seen so far, if any."""
        if self.error is not None:
            raise self.error

    async def wait_for(self, n: int, timeout_cycles: int = 1_000_000) -> None:
        """Wait until at least ``n`` beats were received in total."""
        from cocotb.triggers import RisingEdge

        for _ in range(timeout_cycles):
            self.check()
            if self.received >= n:
                return
            await RisingEdge(self.clk)
        raise TimeoutError(f"received {self.received} beats, expected {n}")

    async def finish(self, tail_cycles: int = TAIL_CYCLES) -> None:
        """Wait for every expected beat, then ``tail_cycles`` more cycles in which ``valid`` must
        stay low; raises on any violation or a wrong beat count, and stops the monitor."""
        from cocotb.triggers import ClockCycles

        if self.checker.expected is None:
            raise ValueError("finish() needs a monitor created with expected=<beats>")
        await self.wait_for(self.checker.expected)
        await ClockCycles(self.clk, tail_cycles)
        self.check()
        self.checker.complete()
        self.stop()

    async def _run(self):
        from cocotb.triggers import FallingEdge, RisingEdge

        rdy = False
        while True:
            await FallingEdge(self.clk)
            valid = as_int(self.valid.value)
            try:
                bits = as_int(self.payload.value) if valid else 0
                if self.checker.sample(valid, rdy, bits):
                    item = bits if self.shape is None else unpack(self.shape, bits)
                    self.checker.beat(item)
                    self.received += 1
                    if self.callback is not None:
                        self.callback(item)
                    else:
                        self.items.append(item)
            except Exception as exc:    # (raised in the test by wait_for / check / finish)
                self.error = exc
                return
            await RisingEdge(self.clk)
            rdy = self.rng.random() >= self.p
            self.ready.value = int(rdy)
