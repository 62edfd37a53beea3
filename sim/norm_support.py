"""Helpers of the norm-unit / attention tests.

* :func:`row_beats`: groups the output beats of the differential norm units (protocol
  ``{data, skip, last}``: ``n`` beats or one ``skip`` beat per row) into dense per-row arrays.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Value

from .amaranth_tb import stream_shape
from .contract import TAIL_CYCLES, StreamChecker
from .streams import pack, unpack

__all__ = ["row_beats", "expected_beats", "tracking_deltas",
           "start_clock_and_reset", "run_norm_unit", "measure_stream"]


PATTERNS = ("uniform", "equal", "ties", "underflow", "extreme", "narrow", "single")


def _pattern(rng, kind: str, n: int, lo: int, hi: int) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(lo, hi + 1, n)
    if kind == "equal":  # all equal: softmax uniform, LayerNorm σ from E only
        return np.full(n, rng.integers(lo, hi + 1))
    if kind == "ties":  # several elements share the maximum
        x = rng.integers(lo, hi // 2 + 1, n)
        x[rng.choice(n, size=min(n, 3), replace=False)] = rng.integers(hi // 2, hi + 1)
        return x
    if kind == "underflow":  # one far above the rest: 2^x underflows to 0
        x = rng.integers(lo, lo + max(1, (hi - lo) // 16) + 1, n)
        x[rng.integers(n)] = hi
        return x
    if kind == "extreme":
        return rng.choice([lo, hi], size=n)
    if kind == "narrow":
        c = int(rng.integers(lo + 2, hi - 1))
        return np.clip(c + rng.integers(-2, 3, n), lo, hi)
    if kind == "single":  # one element differs: largest |c_i|/σ in LayerNorm
        x = np.full(n, rng.integers(lo, hi + 1))
        x[rng.integers(n)] = rng.choice([lo, hi])
        return x
    raise ValueError(kind)


def tracking_deltas(rng, steps: int, rows: int, n: int, lo: int, hi: int, dmax: int, *,
                    p_new: float = 0.35, zero_steps=(), frozen_rows=(), patterns=PATTERNS):
    """Input deltas ``(steps, rows, n)`` whose running sums stay in ``[lo, hi]``.

    Every row tracks a target row (redrawn with probability ``p_new`` per step from
    ``patterns``: uniform, all-equal, ties for the max, underflow, extremes, narrow, single
    outlier) by steps of at most ``dmax`` per element, so rows are often unchanged for many steps.
    ``zero_steps`` are all-zero steps; ``frozen_rows`` never change after step 0.
    """
    X = np.zeros((rows, n), dtype=np.int64)
    target = X.copy()
    out = np.zeros((steps, rows, n), dtype=np.int64)
    for t in range(steps):
        for r in range(rows):
            if rng.random() < p_new or t == 0:
                target[r] = _pattern(rng, patterns[int(rng.integers(len(patterns)))], n, lo, hi)
        d = np.clip(target - X, -dmax, dmax)
        if t in zero_steps:
            d[:] = 0
        if t > 0:
            d[list(frozen_rows)] = 0
        X += d
        out[t] = d
    return out


def measure_stream(unit, items, n_out: int, max_cycles: int = 1_000_000):
    """Cycle-accurate trace of ``unit`` (``i_stream``/``o_stream``) at full rate (Amaranth sim).

    Sends ``items`` back to back (valid always high while items remain) with the output always
    ready, until ``n_out`` beats came out. Returns ``(in_cycles, out_cycles, out_beats)``: the
    cycle index of every input transfer and every output transfer, and the unpacked beats.
    The output stream is checked by a :class:`~equispike.sim.contract.StreamChecker` (``n_out``
    beats, then ``TAIL_CYCLES`` cycles without ``valid``).
    """
    from amaranth.sim import Simulator

    ist, ost = unit.i_stream, unit.o_stream
    ishape, oshape = stream_shape(ist), stream_shape(ost)
    ipay, opay = Value.cast(ist.payload), Value.cast(ost.payload)
    in_c: list[int] = []
    out_c: list[int] = []
    beats: list = []
    checker = StreamChecker("o_stream", n_out)

    async def tb(ctx):
        i = cyc = 0
        ctx.set(ost.ready, 1)
        while (len(beats) < n_out or cyc <= out_c[-1] + TAIL_CYCLES) and cyc < max_cycles:
            if i < len(items):
                ctx.set(ipay, pack(ishape, items[i]))
                ctx.set(ist.valid, 1)
            else:
                ctx.set(ist.valid, 0)
            _, _, iv, ir, ov, bits = await ctx.tick().sample(ist.valid, ist.ready, ost.valid, opay)
            if iv and ir:
                in_c.append(cyc)
                i += 1
            if checker.sample(ov, 1, bits):
                out_c.append(cyc)
                beats.append(unpack(oshape, bits))
            cyc += 1
        checker.complete()

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return in_c, out_c, beats


def expected_beats(delta_in: np.ndarray, first_step: bool) -> int:
    """Number of output beats for one step whose input deltas are ``delta_in`` ``(rows, n)``.

    A row is recomputed (``n`` beats) at the first step or when any input delta is nonzero (its
    output deltas may still all be zero); otherwise it yields one skip beat.
    """
    rows, n = delta_in.shape
    if first_step:
        return rows * n
    return int(sum(n if delta_in[r].any() else 1 for r in range(rows)))


def row_beats(beats, rows: int, n: int):
    """Turn ``rows`` rows' worth of output beats into ``(dense (rows, n) int64, skipped rows, used)``.

    Raises ``ValueError`` on a protocol violation (``last`` misplaced, skip beat with data).
    """
    out = np.zeros((rows, n), dtype=np.int64)
    skipped = np.zeros(rows, dtype=bool)
    k = 0
    for r in range(rows):
        b = beats[k]
        if b["skip"]:
            if not b["last"] or b["data"] != 0:
                raise ValueError(f"row {r}: skip beat must have last=1, data=0, got {b}")
            skipped[r] = True
            k += 1
            continue
        for j in range(n):
            b = beats[k + j]
            if b["skip"] or b["last"] != (j == n - 1):
                raise ValueError(f"row {r} element {j}: bad framing {b}")
            out[r, j] = b["data"]
        k += n
    return out, skipped, k


# --------------------------------------------------------------------------------------------------
# cocotb side (imported lazily: these run inside the simulator process)
# --------------------------------------------------------------------------------------------------
async def start_clock_and_reset(dut, period_ns: int = 10, cycles: int = 3):
    """Start ``dut.clk`` and pulse ``dut.rst`` (Amaranth's default domain ports)."""
    from cocotb.triggers import ClockCycles

    from .clock import start_clock

    start_clock(dut.clk, period_ns)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0


async def run_norm_unit(dut, unit, deltas, expected, *, site: str, idle_prob=0.0,
                        backpressure_prob=0.0, seed=0, log=None):
    """Drive a differential norm unit (softmax / LayerNorm) under cocotb and check every output.

    ``deltas`` and ``expected`` are ``(steps, rows, n)``: the input deltas and the golden output
    deltas of each step (from :class:`equispike.model.differential.DifferentialOp`). Each step's
    output beats are checked for framing (``n`` beats or one skip beat per row, skip only for an
    all-zero input row after the first step) and compared element by element; the first
    difference raises :class:`equispike.sim.scoreboard.Mismatch` ``(step, site, index, expected,
    got)``. Returns ``(elements compared, cycles from first input to last output)``.
    """
    from cocotb.utils import get_sim_time

    from .scoreboard import Scoreboard
    from .streams import StreamDriver, StreamMonitor

    await start_clock_and_reset(dut)
    steps, rows, n = deltas.shape
    drv = StreamDriver(dut, dut.clk, "i_stream", unit.i_stream.payload.shape(),
                       idle_prob=idle_prob, seed=seed)
    n_beats = sum(expected_beats(deltas[t], t == 0) for t in range(steps))
    mon = StreamMonitor(dut, dut.clk, "o_stream", unit.o_stream.payload.shape(),
                        backpressure_prob=backpressure_prob, seed=seed + 1, expected=n_beats)
    sb = Scoreboard(site)
    t0 = get_sim_time("ns")
    for v in deltas.reshape(-1):
        drv.send(int(v))
    total = 0
    for t in range(steps):
        nb = expected_beats(deltas[t], t == 0)
        total += nb
        await mon.wait_for(total)
        beats = [mon.items.popleft() for _ in range(nb)]
        got, skipped, used = row_beats(beats, rows, n)
        assert used == nb, f"step {t}: {used} beats framed, {nb} expected"
        if t == 0:
            assert not skipped.any(), "step 0: a row was skipped on the first step"
        bad = skipped & deltas[t].any(axis=1)
        assert not bad.any(), f"step {t}: changed row {int(np.argmax(bad))} was skipped"
        sb.compare(t, expected[t], got)
    cycles = (get_sim_time("ns") - t0) // 10
    await mon.finish()
    drv.stop()
    sb.require(expected.size)
    if log is not None:
        log.info("%s (%d cycles)", sb.summary(), cycles)
    return sb.compared, cycles
