"""The stream-contract checker (sim/contract.py) catches every rule it states, on its own, in the
Amaranth-simulator helpers and in the cocotb monitor (one Verilator build of a deliberately
faulty source whose fault is chosen at run time)."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from equispike.sim.contract import ContractViolation, StreamChecker

try:
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None

MODULE = "equispike.tests.test_stream_contract"
BEATS = 12
#: fault modes of :class:`FaultySource` (its ``mode`` input)
FAULTS = {0: None, 1: "drops valid", 2: "payload changes", 3: "extra beat"}


class FaultySource(wiring.Component):
    """Sends beats 0..BEATS-1 on ``o_stream``; ``mode`` adds one fault: 1 drops ``valid`` every
    other cycle (also while a beat waits), 2 changes the payload while stalled, 3 sends one beat
    more than ``BEATS``."""

    def __init__(self):
        super().__init__({"mode": In(2), "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        k = Signal(8)
        odd = Signal()
        m.d.sync += odd.eq(~odd)
        valid = k < BEATS + (self.mode == 3)
        m.d.comb += [self.o_stream.valid.eq(valid & ~((self.mode == 1) & odd)),
                     self.o_stream.payload.eq(k + ((self.mode == 2) & odd))]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += k.eq(k + 1)
        return m


def test_checker_rules():
    ok = StreamChecker("s", expected=2)
    assert [ok.sample(1, 0, 5), ok.sample(1, 1, 5), ok.sample(0, 1, 0), ok.sample(1, 1, 6)] == [
        False, True, False, True]
    ok.sample(0, 1, 0)
    ok.complete()
    c = StreamChecker("s")
    c.sample(1, 0, 5)
    with pytest.raises(ContractViolation, match="valid dropped before the beat was transferred"):
        c.sample(0, 1, 5)
    c = StreamChecker("s")
    c.sample(1, 0, 5)
    with pytest.raises(ContractViolation, match=r"payload changed while valid and not ready"):
        c.sample(1, 1, 6)
    c = StreamChecker("s", expected=1)
    c.sample(1, 1, 5)
    with pytest.raises(ContractViolation, match=r"valid after the last expected beat"):
        c.sample(1, 0, 5)
    c = StreamChecker("s", expected=3)
    c.sample(1, 1, 5)
    with pytest.raises(ContractViolation, match="1 beats transferred, 3 expected"):
        c.complete()
    seen = []
    c = StreamChecker("s", check_beat=lambda i, item: seen.append((i, item)))
    c.sample(1, 1, 7)
    c.beat({"x": 7})
    assert seen == [(0, {"x": 7})]
    with pytest.raises(ValueError, match="expected must be a non-negative integer"):
        StreamChecker("s", expected=-1)


@pytest.mark.sim
@pytest.mark.parametrize("mode", list(FAULTS))
def test_amaranth_helpers_check_the_contract(mode):
    from equispike.sim.amaranth_tb import get_stream, run_testbenches, stream_testbench

    for helper in ("get_stream", "stream_testbench"):
        dut = FaultySource()
        out: list = []

        async def set_mode(ctx, dut=dut):
            ctx.set(dut.mode, mode)

        if helper == "get_stream":
            tb = get_stream(dut.o_stream, BEATS, out, backpressure_prob=0.5, seed=1)
        else:
            tb = stream_testbench([], [(dut.o_stream, BEATS, out)], backpressure_prob=0.5, seed=1)

        async def main(ctx, tb=tb, set_mode=set_mode):
            await set_mode(ctx)
            await tb(ctx)

        if FAULTS[mode] is None:
            run_testbenches(dut, main, max_cycles=1000)
            assert out == list(range(BEATS))
        else:
            with pytest.raises(ContractViolation):
                run_testbenches(dut, main, max_cycles=1000)


if cocotb is not None:
    from equispike.sim.clock import start_clock

    @cocotb.test()
    @cocotb.parametrize(mode=list(FAULTS))
    async def monitor_checks_the_contract(dut, mode):
        from cocotb.triggers import ClockCycles

        from equispike.sim import StreamMonitor

        dut.mode.value = mode
        dut.rst.value = 1
        dut.o_stream__ready.value = 0
        start_clock(dut.clk)
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        mon = StreamMonitor(dut, dut.clk, "o_stream", None, backpressure_prob=0.5, seed=3,
                            expected=BEATS)
        if FAULTS[mode] is None:
            await mon.finish()
            assert list(mon.items) == list(range(BEATS))
            return
        try:
            await mon.finish()
        except ContractViolation as exc:
            dut._log.info("caught: %s", exc)
        else:
            raise AssertionError(f"fault {FAULTS[mode]!r} was not caught by StreamMonitor")


@pytest.mark.sim
def test_cocotb_monitor_checks_the_contract(request):
    from equispike.sim import build_dir_for, run_cocotb

    run_cocotb(FaultySource(), test_module=MODULE, build_dir=build_dir_for(request.node.nodeid))
