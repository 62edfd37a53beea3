"""Arithmetic blocks of the norm units (rtl/_arith.py) in the Amaranth simulator: exhaustive or
random operands against Python integer arithmetic and the golden :func:`equispike.model.intops.isqrt`.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.sim import Simulator

from equispike.model.intops import isqrt
from equispike.rtl._arith import (
    PipelinedDivider,
    SequentialIsqrt,
    const_mul,
    const_mul_latency,
    mul_latency,
    pipelined_mul,
)


def _run(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.sim
@pytest.mark.parametrize("nw,dw,qw", [(8, 4, 5), (28, 20, 13), (37, 20, 21)])
def test_divider_free_running(nw, dw, qw):
    """One division per cycle, results ``quo_width`` cycles later, in order, with the tag; the
    divisor changes only between batches (the users' contract)."""
    dut = PipelinedDivider(nw, dw, qw, 8)
    rng = random.Random(nw)
    batches = []
    for _ in range(6):
        den = rng.choice([1, 2, 3, (1 << dw) - 1, rng.randrange(1, 1 << dw)])
        hi = min((1 << nw) - 1, den * (1 << qw) - 1)
        nums = [rng.choice([0, hi, den - 1 if den <= hi else 0, rng.randrange(hi + 1)])
                for _ in range(12)]
        batches.append((den, nums))

    async def tb(ctx):
        got = []
        for den, nums in batches:
            ctx.set(dut.i_den, den)
            for k in range(len(nums) + qw):
                if k < len(nums):
                    ctx.set(dut.i_num, nums[k])
                    ctx.set(dut.i_tag, k)
                ctx.set(dut.i_valid, k < len(nums))
                await ctx.tick()
                if ctx.get(dut.o_valid):
                    got.append((k - qw + 1, ctx.get(dut.o_tag), ctx.get(dut.o_quo),
                                ctx.get(dut.o_rem)))
            assert [g[0] for g in got] == list(range(len(nums)))  # latency quo_width
            for (_, tag, q, r), num in zip(got, nums, strict=True):
                assert (q, r) == divmod(num, den), (num, den, q, r)
                assert tag == got.index((_, tag, q, r))
            got.clear()

    _run(dut, tb)


@pytest.mark.sim
@pytest.mark.parametrize("width", [1, 2, 7, 39])
def test_isqrt_exact(width):
    dut = SequentialIsqrt(width)
    top = (1 << width) - 1
    vals = sorted({0, 1, 2, 3, top, top - 1} | {random.Random(width).randrange(top + 1)
                                                for _ in range(20)})
    if width <= 7:
        vals = list(range(top + 1))
    vals = [v for v in vals if 0 <= v <= top]

    async def tb(ctx):
        for v in vals:
            ctx.set(dut.value, v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cyc = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cyc += 1
            assert cyc == (width + 1) // 2 + 1
            assert ctx.get(dut.root) == int(isqrt(np.array([v]))[0]), v

    _run(dut, tb)


@pytest.mark.sim
@pytest.mark.parametrize("wa,b", [(12, 1132701), (20, 20), (14, 14), (36, 7), (5, 0), (18, 1 << 20)])
def test_pipelined_and_const_mul(wa, b):
    """Variable × variable (``b`` a width) or × constant (``b`` an int), the stated latency."""
    m = Module()
    a = Signal(wa)
    if isinstance(b, int) and b in (14, 20):  # a width: variable operand
        bv = Signal(b)
        p, lat = pipelined_mul(m, a, bv), mul_latency(wa, bv)
    else:
        bv = None
        p, lat = pipelined_mul(m, a, b), mul_latency(wa, b)
    k = 1132701 if bv is None else 3
    c, clat = const_mul(m, a, k), const_mul_latency(k)
    out, cout = Signal(unsigned(len(p))), Signal(unsigned(len(c)))
    m.d.comb += [out.eq(p), cout.eq(c)]
    rng = random.Random(wa)
    xs = [(rng.randrange(1 << wa), rng.randrange(1 << len(bv)) if bv is not None else b)
          for _ in range(30)] + [((1 << wa) - 1, (1 << len(bv)) - 1 if bv is not None else b)]

    async def tb(ctx):
        hist = []
        for t in range(len(xs) + max(lat, clat) + 1):
            x, y = xs[min(t, len(xs) - 1)]
            ctx.set(a, x)
            if bv is not None:
                ctx.set(bv, y)
            hist.append((x, y))
            await ctx.tick()
            if t >= lat:
                xx, yy = hist[t - lat + 1] if lat else (x, y)
                assert ctx.get(out) == xx * yy, (t, xx, yy)
            if t >= clat:
                xx, _ = hist[t - clat + 1] if clat else (x, 0)
                assert ctx.get(cout) == xx * k

    _run(m, tb)
