"""Registered multipliers: one DSP limb product with its registers inside the DSP block.

* :class:`RegisteredMul` -- unsigned ``a × b`` of at most 18 × 18 bits, input, pipeline and
  output registers, latency :data:`RegisteredMul.LATENCY` = 3 cycles, one product per cycle. For
  ``target="ecp5"`` it is one ``MULT18X18D`` instance with all three register stages enabled;
  otherwise plain Amaranth registers and ``*`` with the same cycle behaviour (simulation, other
  families).
* :func:`registered_mul` -- unsigned product of wider operands: 18-bit limbs, one
  :class:`RegisteredMul` per limb pair, then the registered adder tree of
  :func:`~equispike.rtl._arith.pipelined_mul`; :func:`registered_mul_latency` cycles.

Why an instance: Yosys maps ``*`` onto a bare ``MULT18X18D`` (no internal registers) and cannot
absorb the surrounding fabric registers into the DSP; nextpnr-ecp5 then times the multiplier array
as a combinational 3.9 ns arc between two fabric registers (about 135 MHz with the routing). With
the input and output registers inside the block, nextpnr times the instance as registered (setup
at the input registers, clock to out from the output registers, from its timing database): only
the routing to and from the block remains on fabric paths. The pipeline register splits the
array for the real silicon as well (nextpnr does not time the internal stages).

Simulation of ``target="ecp5"`` netlists needs a model of the primitive,
``equispike/sim/models/MULT18X18D.v`` (``extra_sources`` of :func:`equispike.sim.build.run_cocotb`),
and :data:`ECP5_SIM_BUILD_ARGS` (``extra_build_args``): the instance leaves the pins it does not use
open, as Yosys's own ``MULT18X18D`` mapping does, which Verilator reports as ``PINMISSING``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._arith import LIMB, _add_tree, _limbs, _tree_levels, check_int

__all__ = ["DSP_TARGETS", "ECP5_SIM_BUILD_ARGS", "RegisteredMul", "check_dsp_target", "registered_mul",
           "registered_mul_latency"]

DSP_TARGETS = (None, "generic", "ecp5")
"""Accepted ``target`` values: ``None``/``"generic"`` (Amaranth registers and ``*``), ``"ecp5"``
(``MULT18X18D`` instance)."""

ECP5_SIM_BUILD_ARGS = ("-Wno-PINMISSING",)
"""Verilator arguments for a netlist with ``target="ecp5"`` instances (unused primitive pins open)."""


def check_dsp_target(name: str, target) -> str | None:
    """Validate a DSP target (one of :data:`DSP_TARGETS`); returns it."""
    if target not in DSP_TARGETS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, DSP_TARGETS))}, got {target!r}")
    return target


class RegisteredMul(wiring.Component):
    """Unsigned ``p = a · b`` with the registers inside the DSP block.

    ``p`` at cycle ``t`` is the product of the ``a`` and ``b`` presented at cycle ``t − 3``:
    input registers (``a``, ``b``), the multiplier array, a pipeline register, an output register
    (:data:`LATENCY` = 3). Fully pipelined, free running: one product per cycle, no enable, no
    stall. The registers have no reset (the domain reset does not clear them; they start at 0):
    the users qualify the products with their own delayed valid bits.

    Parameters
    ----------
    a_width, b_width:
        Operand widths, each in ``[1, 18]`` (one ECP5 ``MULT18X18D``, unsigned). ``p`` has
        ``a_width + b_width`` bits.
    target:
        ``None`` or ``"generic"`` (default): Amaranth registers and ``*`` (any simulator, any
        family; the synthesis tool maps the product). ``"ecp5"``: one ``MULT18X18D`` instance,
        ``REG_INPUTA_CLK = REG_INPUTB_CLK = REG_PIPELINE_CLK = REG_OUTPUT_CLK = "CLK0"`` on the
        ``sync`` clock, ``CE0 = 1``, ``RST0 = 0``, ``RESETMODE = "SYNC"``, ``GSR = "DISABLED"``,
        unsigned (``SIGNEDA = SIGNEDB = 0``), operands from the ``A``/``B`` pins
        (``SOURCEA = SOURCEB = 0``), unused operand bits and ``C`` tied to 0; the shift-chain
        inputs ``SRIA``/``SRIB`` (dedicated DSP-to-DSP wires, not reachable from the fabric
        constant net), ``CLK1..3``, ``CE1..3``, ``RST1..3`` and the unused outputs stay open, as
        in Yosys's own mapping. The same cycle behaviour as the generic build; simulate it with
        ``sim/models/MULT18X18D.v``.

    Attributes
    ----------
    a, b : In
        Operands.
    p : Out
        Product, :data:`LATENCY` cycles later.
    """

    LATENCY = 3
    """Cycles from ``a``/``b`` to ``p``."""

    def __init__(self, a_width: int, b_width: int, target: str | None = None):
        self.a_width = check_int("a_width", a_width, 1, LIMB)
        self.b_width = check_int("b_width", b_width, 1, LIMB)
        self.target = check_dsp_target("target", target)
        super().__init__({
            "a": In(self.a_width),
            "b": In(self.b_width),
            "p": Out(self.a_width + self.b_width),
        })

    def elaborate(self, platform):
        m = Module()
        wa, wb = self.a_width, self.b_width
        if self.target == "ecp5":
            a = Cat(self.a, Const(0, LIMB - wa)) if wa < LIMB else self.a
            b = Cat(self.b, Const(0, LIMB - wb)) if wb < LIMB else self.b
            p = Signal(2 * LIMB)
            ports = {f"i_A{i}": a[i] for i in range(LIMB)}
            ports.update({f"i_B{i}": b[i] for i in range(LIMB)})
            ports.update({f"i_C{i}": Const(0, 1) for i in range(LIMB)})
            ports.update({f"o_P{i}": p[i] for i in range(2 * LIMB)})
            params = {}
            for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
                params.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0",
                               f"p_REG_{reg}_RST": "RST0"})
            m.submodules.dsp = Instance(
                "MULT18X18D", **params, p_REG_INPUTC_CLK="NONE", p_GSR="DISABLED",
                p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
                i_CLK0=ClockSignal("sync"), i_CE0=Const(1, 1), i_RST0=Const(0, 1),
                i_SIGNEDA=Const(0, 1), i_SIGNEDB=Const(0, 1), i_SOURCEA=Const(0, 1),
                i_SOURCEB=Const(0, 1), **ports)
            m.d.comb += self.p.eq(p[:wa + wb])
        else:
            a_r = Signal(wa, reset_less=True)
            b_r = Signal(wb, reset_less=True)
            p_pipe = Signal(wa + wb, reset_less=True)
            p_out = Signal(wa + wb, reset_less=True)
            m.d.sync += [a_r.eq(self.a), b_r.eq(self.b), p_pipe.eq(a_r * b_r), p_out.eq(p_pipe)]
            m.d.comb += self.p.eq(p_out)
        return m


def registered_mul_latency(a_width: int, b_width: int) -> int:
    """Latency (cycles) of :func:`registered_mul` for ``a_width``- and ``b_width``-bit operands:
    :data:`RegisteredMul.LATENCY` plus one cycle per adder-tree level."""
    check_int("a_width", a_width, 1)
    check_int("b_width", b_width, 1)
    return RegisteredMul.LATENCY + _tree_levels(len(_limbs(a_width)) * len(_limbs(b_width)))


def registered_mul(m: Module, a, b, name: str = "rmul", target: str | None = None):
    """Unsigned ``a · b`` of two values, :func:`registered_mul_latency` cycles later.

    The operands are split into 18-bit limbs; every limb pair is one :class:`RegisteredMul`
    (``target`` as there: one fully registered ``MULT18X18D`` each for ``"ecp5"``), and the
    partial products are summed by the registered pairwise adder tree of
    :func:`~equispike.rtl._arith.pipelined_mul` (one adder per register-to-register path).
    Free running, one product per cycle; the limb registers have no reset. ``a`` and ``b`` should
    be register outputs (the path into the DSP input registers is then routing only).
    """
    check_dsp_target("target", target)
    a, b = Value.cast(a), Value.cast(b)
    if not len(a) or not len(b):
        raise ValueError(f"registered_mul needs operands of at least one bit, got {len(a)} and "
                         f"{len(b)} bits")
    terms = []
    for i, (alo, ahi) in enumerate(_limbs(len(a))):
        for j, (blo, bhi) in enumerate(_limbs(len(b))):
            mul = RegisteredMul(ahi - alo, bhi - blo, target)
            m.submodules[f"{name}_m{i}_{j}"] = mul
            m.d.comb += [mul.a.eq(a[alo:ahi]), mul.b.eq(b[blo:bhi])]
            terms.append((mul.p, alo + blo))
    return _add_tree(m, terms, name)
