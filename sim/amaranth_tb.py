"""Fast testbench helpers on Amaranth's own simulator (no Verilator build).

For handshake corner cases: random idle cycles on inputs, random back-pressure on outputs,
stalls, resets mid-stream. Payloads are converted with :func:`equispike.sim.streams.pack` /
``unpack`` from the stream's Amaranth payload shape::

    sim = Simulator(dut); sim.add_clock(1e-6)
    out = []
    sim.add_testbench(put_stream(dut.i_stream, items, idle_prob=0.3, seed=1))
    sim.add_testbench(get_stream(dut.o_stream, n, out, backpressure_prob=0.5, seed=2))
    sim.run_until(...)   # or run_testbenches(...)

Every output stream these helpers receive is checked every cycle by the same
:class:`~equispike.sim.contract.StreamChecker` as under cocotb (valid held until the transfer,
payload stable while stalled, no beat after the last expected one: ``tail`` cycles with ``ready``
high after it).
"""

from __future__ import annotations

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator

from .contract import TAIL_CYCLES, StreamChecker
from .streams import pack, unpack

__all__ = ["put_stream", "get_stream", "run_testbenches", "stream_shape", "stream_testbench"]


def stream_shape(stream):
    """Amaranth shape of a stream interface's payload."""
    return stream.payload.shape() if hasattr(stream.payload, "shape") else stream.payload.shape


def put_stream(stream, items, *, idle_prob=0.0, seed=0, before=None):
    """Testbench coroutine factory: send ``items`` in order on ``stream`` (valid/ready).

    ``before(ctx, i)`` is awaited, if given, before beat ``i`` (e.g. to pulse a reset).
    """
    shape = stream_shape(stream)
    rng = random.Random(seed)

    async def tb(ctx):
        for i, item in enumerate(items):
            if before is not None:
                await before(ctx, i)
            while rng.random() < idle_prob:
                await ctx.tick()
            ctx.set(Value.cast(stream.payload), pack(shape, item))
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)

    return tb


def get_stream(stream, n, out: list, *, backpressure_prob=0.0, seed=0, check_beat=None,
               tail: int = TAIL_CYCLES, name: str = "o_stream"):
    """Testbench coroutine factory: receive ``n`` beats from ``stream`` into ``out``.

    The stream is checked every cycle (:class:`~equispike.sim.contract.StreamChecker` with
    ``expected = n`` and ``check_beat``), and for ``tail`` cycles after the last beat, with
    ``ready`` high, ``valid`` must stay low.
    """
    shape = stream_shape(stream)
    rng = random.Random(seed)
    checker = StreamChecker(name, n, check_beat)

    async def tb(ctx):
        k = 0
        while len(out) < n or k < tail:
            if len(out) >= n:
                k += 1
            rdy = len(out) >= n or rng.random() >= backpressure_prob
            ctx.set(stream.ready, int(rdy))
            *_, valid, bits = await ctx.tick().sample(stream.valid, Value.cast(stream.payload))
            if checker.sample(valid, rdy, bits):
                out.append(unpack(shape, bits))
                checker.beat(out[-1])
        ctx.set(stream.ready, 0)
        checker.complete()

    return tb


def run_testbenches(dut, *testbenches, processes=(), max_cycles=100_000, vcd=None, period=1e-8):
    """Run ``testbenches`` (coroutine functions ``tb(ctx)``) to completion on ``dut``.

    Raises ``TimeoutError`` if they have not finished after ``max_cycles`` clock cycles.
    """
    sim = Simulator(dut)
    sim.add_clock(period)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    done = []

    async def watchdog(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
        done.append("timeout")

    sim.add_testbench(watchdog, background=True)

    def _run():
        sim.run()

    if vcd is not None:
        with sim.write_vcd(vcd):
            _run()
    else:
        _run()
    if done:
        raise TimeoutError(f"testbenches did not finish within {max_cycles} cycles")


def stream_testbench(inputs, outputs, *, idle_prob=0.0, backpressure_prob=0.0, seed=0,
                     on_cycle=None, max_cycles=100_000, tail: int = TAIL_CYCLES):
    """One testbench driving several streams in lockstep (single coroutine, exact per cycle).

    Parameters
    ----------
    inputs:
        List of ``(stream, items)``: beats to send on DUT input streams, in order.
    outputs:
        List of ``(stream, n, out_list)``: receive ``n`` beats from each DUT output stream into
        ``out_list`` (unpacked with the payload shape).
    idle_prob, backpressure_prob:
        Per-cycle probability of holding ``valid`` low before a beat / ``ready`` low.
    on_cycle:
        Optional ``f(ctx, cycle)`` called every cycle before the clock edge (it may ``ctx.set``
        other DUT inputs, e.g. pulse a clear or reset).
    tail:
        Cycles after the last beat in which every output stream, ``ready`` high, must keep
        ``valid`` low (when there are outputs).

    Finishes when every input item was sent and every output count received. Each output stream
    is checked every cycle by a :class:`~equispike.sim.contract.StreamChecker`.
    """
    rng = random.Random(seed)

    async def tb(ctx):
        ins = [[s, list(items), 0, False, stream_shape(s)] for s, items in inputs]
        outs = [(s, n, lst, stream_shape(s)) for s, n, lst in outputs]
        checkers = [StreamChecker(f"output {k}", n) for k, (_s, n, _l) in enumerate(outputs)]
        cycle = 0
        while any(i[2] < len(i[1]) for i in ins) or any(len(o[2]) < o[1] for o in outs):
            if cycle >= max_cycles:
                raise TimeoutError(f"stream_testbench: not done after {max_cycles} cycles")
            for i in ins:
                s, items, idx, busy, shape = i
                if not busy and idx < len(items) and rng.random() >= idle_prob:
                    ctx.set(Value.cast(s.payload), pack(shape, items[idx]))
                    i[3] = True
                ctx.set(s.valid, int(i[3]))
            rdys = []
            for s, n, lst, _ in outs:
                rdy = len(lst) < n and rng.random() >= backpressure_prob
                ctx.set(s.ready, int(rdy))
                rdys.append(rdy)
            if on_cycle is not None:
                on_cycle(ctx, cycle)
            sigs = [i[0].ready for i in ins]
            for s, *_ in outs:
                sigs += [s.valid, Value.cast(s.payload)]
            sampled = (await ctx.tick().sample(*sigs))[-len(sigs):] if sigs else ()
            for k, i in enumerate(ins):
                if i[3] and sampled[k]:
                    i[2] += 1
                    i[3] = False
            for k, (_s, _n, lst, shape) in enumerate(outs):
                valid, bits = sampled[len(ins) + 2 * k], sampled[len(ins) + 2 * k + 1]
                if checkers[k].sample(valid, rdys[k], bits):
                    lst.append(unpack(shape, bits))
            cycle += 1
        for i in ins:
            ctx.set(i[0].valid, 0)
        for _ in range(tail if outs else 0):
            for s, *_ in outs:
                ctx.set(s.ready, 1)
            sigs = [x for s, *_ in outs for x in (s.valid, Value.cast(s.payload))]
            sampled = (await ctx.tick().sample(*sigs))[-len(sigs):]
            for k in range(len(outs)):
                checkers[k].sample(sampled[2 * k], True, sampled[2 * k + 1])
        for s, *_ in outs:
            ctx.set(s.ready, 0)
        for c in checkers:
            c.complete()

    return tb
