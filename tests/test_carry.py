"""fused_add (rtl/_carry.py): the Amaranth form and the ECP5 ``CCU2C`` chain (under Verilator, with
Yosys' own CCU2C model) against Python integer arithmetic, every cycle."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from equispike.rtl._carry import fused_add, fused_init, kept_reg
from equispike.sim.amaranth_tb import run_testbenches

try:
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None

MODULE = "equispike.tests.test_carry"
W = 13          # pm: 14 CCU2C halves (the carry-in half + 13 bits)
WM = 12         # mux: 13 halves, the last CCU2C's upper half unused

#: the selects the neuron array uses: ``±Θ`` by the sign (d tied to 1) and ``I`` or ``floor(Θ/2)``
SELECTS = {
    "pm": lambda b, c, d: d & (b ^ c ^ 1),
    "mux": lambda b, c, d: (b & d) | ((b ^ 1) & c),
}


class FusedPair(wiring.Component):
    """Both selects side by side, registered outputs; ``target`` picks the form."""

    def __init__(self, target):
        self.target = target
        super().__init__({
            "a": In(signed(11)), "b": In(9), "c": In(signed(10)), "d": In(9), "s": In(1),
            "o_pm": Out(W), "o_mux": Out(WM), "o_kept": Out(2),
        })

    def elaborate(self, platform):
        m = Module()
        # pm: b = Θ (9 bits, zero-extended), c = the sign (shared), d = 1; cin = ~the sign
        pm = fused_add(m, W, self.a, self.b, self.s, 1, SELECTS["pm"], self.s, cin_inv=True,
                       target=self.target, name="pm")
        # mux: b = the select (shared), c = I (signed), d = Θ (9 bits, zero-extended); cin = 0
        mx = fused_add(m, WM, self.a, self.s, self.c, self.d, SELECTS["mux"], 0,
                       target=self.target, name="mx")
        m.d.sync += [self.o_pm.eq(pm), self.o_mux.eq(mx)]
        # kept_reg with a synchronous reset (b[0]) to its init value, 0 and 1
        k0 = kept_reg(m, self.s, rst=self.b[0], target=self.target, name="k0")
        k1 = kept_reg(m, self.s, rst=self.b[0], target=self.target, name="k1", init=1)
        m.d.comb += self.o_kept.eq(Cat(k0, k1))
        return m


def expected(a, b, c, d, s):
    """pm = a + b if s else a - b modulo 2**W; mux = a + (d if s else c) modulo 2**WM; the
    kept registers: s, or their init values 0 and 1 when b is odd (reset)."""
    kept = 0b10 if b & 1 else s * 0b11
    return (a + (b if s else -b)) % (1 << W), (a + (d if s else c)) % (1 << WM), kept


def stimulus(seed: int, n: int):
    rng = random.Random(seed)
    for _ in range(n):
        yield (rng.choice([-1024, 1023, 0, -1, rng.randrange(-1024, 1024)]),
               rng.choice([0, 511, rng.randrange(512)]),
               rng.choice([-512, 511, 0, rng.randrange(-512, 512)]),
               rng.choice([0, 511, rng.randrange(512)]), rng.randrange(2))


def test_fused_init_rejects_bad_select():
    assert fused_init(SELECTS["pm"]) & 0xF == 0b1010      # generate = a
    with pytest.raises(ValueError, match=r"t\(b, 0, 0\)"):
        fused_init(lambda b, c, d: b)


@pytest.mark.sim
def test_fused_add_amaranth():
    dut = FusedPair(None)
    ops = list(stimulus(1, 400))

    async def tb(ctx):
        for k, (a, b, c, d, s) in enumerate(ops):
            for sig, v in ((dut.a, a), (dut.b, b), (dut.c, c), (dut.d, d), (dut.s, s)):
                ctx.set(sig, v)
            await ctx.tick()
            got = (ctx.get(dut.o_pm), ctx.get(dut.o_mux), ctx.get(dut.o_kept))
            assert got == expected(a, b, c, d, s), f"first mismatch: cycle {k}, operands {a, b, c, d, s}"
            n[0] += 1

    n = [0]
    run_testbenches(dut, tb)
    assert n[0] == len(ops) > 0, f"{n[0]} cycles compared"


if cocotb is not None:
    from cocotb.triggers import ReadOnly, RisingEdge, Timer

    from equispike.sim.clock import hold_clock_low, start_clock
    from equispike.sim.streams import as_int

    @cocotb.test()
    async def fused_random(dut):
        """Operands of each cycle written half a period before the edge that registers them (the
        first ones before the clock starts: no register loads an undriven input)."""
        hold_clock_low(dut.clk)     # (before the first await: see sim/clock.py)
        ops = list(stimulus(2, 3000))
        dut.rst.value = 0
        n = 0
        for k, (a, b, c, d, s) in enumerate(ops):
            dut.a.value, dut.b.value, dut.c.value, dut.d.value, dut.s.value = a, b, c, d, s
            if k == 0:
                await Timer(1, unit="ns")
                start_clock(dut.clk, start_high=False)
            await RisingEdge(dut.clk)
            await ReadOnly()
            got = (as_int(dut.o_pm.value), as_int(dut.o_mux.value), as_int(dut.o_kept.value))
            assert got == expected(a, b, c, d, s), (f"first mismatch: cycle {k}, operands "
                                                    f"{a, b, c, d, s}: expected "
                                                    f"{expected(a, b, c, d, s)}, got {got}")
            n += 1
            await Timer(1, unit="ns")
        assert n == len(ops) > 0, f"{n} cycles compared"
        dut._log.info(f"{2 * n} sums compared, 0 mismatches")


@pytest.mark.sim
@pytest.mark.parametrize("target", [None, "ecp5"])
def test_fused_add_verilator(target, request):
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import MODELS_DIR, ecp5_carry_build_args

    extra = [MODELS_DIR / "ecp5_cells.v"] if target == "ecp5" else []
    args = ecp5_carry_build_args() if target == "ecp5" else []
    run_cocotb(FusedPair(target), test_module=MODULE, build_dir=build_dir_for(request.node.nodeid),
               extra_sources=extra, extra_build_args=args)


def test_fused_add_shapes():
    m = Module()
    x = Signal(unsigned(4))
    with pytest.raises(ValueError, match="target"):
        fused_add(m, 4, x, x, x, x, SELECTS["pm"], target="xilinx")
    with pytest.raises(ValueError, match="init must be 0 or 1"):
        kept_reg(m, x[0], target="ecp5", init=2)


@pytest.mark.sim
@pytest.mark.parametrize("mutant", [None, "zero_extend"])
def test_fused_add_mutation(mutant, monkeypatch):
    """Mutation: ``fused_add`` zero-extends its signed operands instead of sign-extending them
    (``_bit``): the sums with negative operands must differ."""
    from amaranth.hdl import C, Value

    from equispike.sim.mutation import must_fail

    def zero_ext(v, i):
        v = Value.cast(v)
        return v if len(v) == 1 else (v[i] if i < len(v) else C(0, 1))

    if mutant:
        monkeypatch.setattr("equispike.rtl._carry._bit", zero_ext)
    with must_fail(mutant):
        test_fused_add_amaranth()
