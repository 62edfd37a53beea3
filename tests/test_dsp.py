"""Registered multipliers (rtl/_dsp.py) against Python integer products, every output of every cycle.

One bench component holds a full 18 × 18 :class:`~equispike.rtl._dsp.RegisteredMul`, a narrow
7 × 13 one (zero-extended operands on the primitive) and a 37 × 20 :func:`registered_mul` (3 × 2
limbs and a 3-level adder tree). It is built twice under Verilator: ``target=None`` (Amaranth
registers and ``*``) and ``target="ecp5"`` (``MULT18X18D`` instances simulated with our model
``sim/models/MULT18X18D.v``). New random or corner operands (0, 1, max, max − 1) every cycle; each
output is compared bit-exactly with the product of the operands presented ``latency`` cycles
earlier, once the pipeline holds only driven operands: the ``MULT18X18D`` registers have no
power-up value (the runs randomize it, ``sim.build.X_INIT_BUILD_ARGS``), and the operands are
driven before the first clock edge. One file holds the parameter checks, the cocotb testbench and
the pytest launcher.
"""

from __future__ import annotations

import random

import cocotb
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from equispike.rtl._dsp import ECP5_SIM_BUILD_ARGS, RegisteredMul, registered_mul, registered_mul_latency

#: (name, a width, b width) of the bench's multipliers
MULS = (("full", 18, 18), ("narrow", 7, 13), ("wide", 37, 20))


def mul_latency_of(name: str, wa: int, wb: int) -> int:
    return registered_mul_latency(wa, wb) if name == "wide" else RegisteredMul.LATENCY


class MulBench(wiring.Component):
    """``p_<name> = a_<name> · b_<name>`` for each entry of :data:`MULS`."""

    def __init__(self, target):
        self.target = target
        ports = {}
        for name, wa, wb in MULS:
            ports.update({f"a_{name}": In(wa), f"b_{name}": In(wb), f"p_{name}": Out(wa + wb)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for name, wa, wb in MULS:
            a, b, p = (getattr(self, f"{x}_{name}") for x in "abp")
            if name == "wide":
                m.d.comb += p.eq(registered_mul(m, a, b, "wide", self.target))
            else:
                m.submodules[name] = mul = RegisteredMul(wa, wb, self.target)
                m.d.comb += [mul.a.eq(a), mul.b.eq(b), p.eq(mul.p)]
        return m


def operand(rng: random.Random, width: int) -> int:
    top = (1 << width) - 1
    r = rng.random()
    if r < 0.3:
        return rng.choice([0, 1, top, max(0, top - 1)])
    if r < 0.4:  # one limb at its maximum, the others random
        return rng.randrange(top + 1) | (((1 << min(18, width)) - 1) << rng.choice([0, 18, 36])) & top
    return rng.randrange(top + 1)


# --------------------------------------------------------------------------------------------------
# parameter checks and structure (no simulator)
# --------------------------------------------------------------------------------------------------
def test_parameter_validation():
    with pytest.raises(ValueError, match=r"a_width must be in \[1, 18\], got 19"):
        RegisteredMul(19, 4)
    with pytest.raises(ValueError, match=r"b_width must be in \[1, 18\], got 0"):
        RegisteredMul(4, 0)
    with pytest.raises(TypeError, match="a_width must be an integer"):
        RegisteredMul(True, 4)
    with pytest.raises(ValueError, match=r"target must be one of None, 'generic', 'ecp5', got 'ice40'"):
        RegisteredMul(4, 4, "ice40")
    with pytest.raises(ValueError, match="target must be one of"):
        registered_mul(Module(), Signal(4), Signal(4), target="xilinx")
    with pytest.raises(ValueError, match="registered_mul needs operands of at least one bit"):
        registered_mul(Module(), Signal(0), Signal(4))
    assert RegisteredMul.LATENCY == 3
    assert registered_mul_latency(18, 18) == 3
    assert registered_mul_latency(20, 20) == 5  # 2 × 2 limbs, 2 tree levels
    assert registered_mul_latency(37, 20) == 6  # 3 × 2 limbs, 3 tree levels


def test_ecp5_instances():
    """``target="ecp5"``: one fully registered MULT18X18D per limb pair, unsigned, CLK0 only."""
    text = rtlil.convert(MulBench("ecp5"))
    assert text.count("cell \\MULT18X18D ") == 2 + 3 * 2
    for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
        assert text.count(f'parameter \\REG_{reg}_CLK "CLK0"') == 8
    assert "$mul" not in text
    assert "MULT18X18D" not in rtlil.convert(MulBench(None))


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "tree_drops_term"])
def test_registered_mul_amaranth(mutant, monkeypatch):
    """The Amaranth form on Amaranth's simulator, every product of every cycle once the pipeline
    holds driven operands. Mutation: the multi-limb adder tree drops its last partial product
    (``_add_tree``): the wide products must differ."""
    from equispike.rtl import _dsp
    from equispike.sim.amaranth_tb import run_testbenches
    from equispike.sim.mutation import must_fail

    if mutant:
        tree = _dsp._add_tree
        monkeypatch.setattr("equispike.rtl._dsp._add_tree", lambda m, terms, name: tree(m, terms[:-1], name))
    dut = MulBench(None)
    rng = random.Random(5)
    cycles = 300
    compared = [0]

    async def tb(ctx):
        hist = {name: [] for name, _, _ in MULS}
        for t in range(cycles):
            for name, wa, wb in MULS:
                x, y = operand(rng, wa), operand(rng, wb)
                ctx.set(getattr(dut, f"a_{name}"), x)
                ctx.set(getattr(dut, f"b_{name}"), y)
                hist[name].append((x, y))
            await ctx.tick()
            for name, wa, wb in MULS:
                lat = mul_latency_of(name, wa, wb)
                if t + 1 >= lat:
                    a, b = hist[name][t + 1 - lat]
                    got = ctx.get(getattr(dut, f"p_{name}"))
                    assert got == a * b, (f"first mismatch: cycle {t}, {name}, a={a} b={b}: "
                                          f"expected {a * b}, got {got}")
                    compared[0] += 1

    with must_fail(mutant):
        run_testbenches(dut, tb)
        minimum = sum(cycles + 1 - mul_latency_of(*m) for m in MULS)
        assert compared[0] >= minimum, f"{compared[0]} products compared, at least {minimum} required"


# --------------------------------------------------------------------------------------------------
# cocotb testbench (Verilator)
# --------------------------------------------------------------------------------------------------
@cocotb.test()
async def registered_products(dut):
    """New operands every cycle; every output vs the Python product ``latency`` cycles earlier."""
    from cocotb.triggers import FallingEdge

    from equispike.sim import as_int, tb_config
    from equispike.sim.clock import hold_clock_low, start_clock

    hold_clock_low(dut.clk)     # (before the first await: see sim/clock.py)
    cfg = tb_config("seed", "cycles", "target")
    rng = random.Random(cfg["seed"])
    cycles = cfg["cycles"]
    hist = {name: [] for name, _, _ in MULS}
    compared, first = 0, None
    for name, _, _ in MULS:     # driven before the first edge: no register loads an undriven input
        getattr(dut, f"a_{name}").value = 0
        getattr(dut, f"b_{name}").value = 0
    start_clock(dut.clk)
    for t in range(cycles):
        await FallingEdge(dut.clk)  # outputs of the rising edge before; operands for the next one
        for name, wa, wb in MULS:
            lat = mul_latency_of(name, wa, wb)
            if t >= lat:            # (before: registers not yet loaded from driven operands)
                a, b = hist[name][t - lat]
                got = as_int(getattr(dut, f"p_{name}").value)
                compared += 1
            if t >= lat and got != a * b and first is None:
                first = (t, name, a, b, a * b, got)
                dut._log.error("first mismatch: cycle %d, %s, a=%d b=%d expected %d got %d", *first)
            x, y = (operand(rng, wa), operand(rng, wb)) if t < cycles - 8 else (0, 0)
            getattr(dut, f"a_{name}").value = x
            getattr(dut, f"b_{name}").value = y
            hist[name].append((x, y))
    dut._log.info("target=%s: %d products compared over %d cycles, mismatch: %s", cfg["target"],
                  compared, cycles, first)
    assert first is None, f"first mismatch (cycle, mul, a, b, expected, got): {first}"
    minimum = sum(cycles - mul_latency_of(*m) for m in MULS)
    assert compared >= minimum > 0, f"{compared} products compared, at least {minimum} required"


@pytest.mark.sim
@pytest.mark.parametrize("target", [None, "ecp5"], ids=["generic", "ecp5"])
def test_registered_mul_verilator(request, target):
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import MODELS_DIR

    run_cocotb(MulBench(target), test_module="equispike.tests.test_dsp",
               build_dir=build_dir_for(request.node.nodeid),
               config={"target": target, "seed": 11, "cycles": 3000},
               extra_sources=[MODELS_DIR / "MULT18X18D.v"] if target == "ecp5" else (),
               extra_build_args=ECP5_SIM_BUILD_ARGS if target == "ecp5" else ())
