"""The clock of a cocotb testbench, low from the simulator's first evaluation on.

Why: Verilator builds use random initial values (:data:`~equispike.sim.build.X_INIT_BUILD_ARGS`),
and with ``--public-flat-rw`` (cocotb) every module instance keeps its own copy of its clock port,
initialized at random independently of the top-level ``clk``. cocotb's ordinary writes are
applied only after the simulator's first evaluation, so with a random ``clk = 1`` every instance
whose copy started at 0 sees a rising edge at time 0, alone and with random inputs: a vendor model
(``DP16KD``) writes a random word into its initial contents, a ``TRELLIS_FF`` loses its power-up
value. The device has no clock edge before configuration ends, and the testbench is the clock's
source: it drives the clock low before that first evaluation (``Immediate``), so all the copies
start equal and the first rising edge is the testbench's own. Call :func:`hold_clock_low` (or
:func:`start_clock`) before the coroutine's first ``await``.
"""

from __future__ import annotations

__all__ = ["hold_clock_low", "start_clock"]


def hold_clock_low(clk) -> None:
    """Drive ``clk`` to 0 at once (not at the end of the time step, as ``clk.value = 0`` would)."""
    from cocotb.handle import Immediate

    clk.value = Immediate(0)


def start_clock(clk, period_ns: int = 10, *, start_high: bool = True) -> None:
    """:func:`hold_clock_low`, then a free-running cocotb ``Clock`` of ``period_ns`` on ``clk``."""
    from cocotb.clock import Clock

    hold_clock_low(clk)
    Clock(clk, period_ns, unit="ns").start(start_high=start_high)
