"""An adder whose second operand is a 3-input function per bit, computed inside the carry chain.

``fused_add(a, t(b, c, d), cin)`` = ``a + T + cin`` with ``T_i = t(b_i, c_i, d_i)``. On ECP5
(``target="ecp5"``) every bit is one half of a ``CCU2C`` whose LUT4 computes the propagate
``a_i ^ T_i`` directly from ``a_i, b_i, c_i, d_i``: the operand select (e.g. ``±Θ``, or ``I`` vs.
``floor(Θ/2)``) costs no LUT of its own, where Yosys maps ``a + Mux(...)`` onto a LUT per bit in
front of a plain adder chain. Otherwise (simulation, other families) it is the same arithmetic
written in Amaranth.

Why ``t(b, 0, 0)`` must be 0: the ``CCU2C`` carry logic (Yosys' ``share/lattice/ccu2c_sim.vh``)
is ``cout = P ? cin : G`` with ``P = LUT4(a, b, c, d)`` and ``G = LUT2(a, b)`` taken from the same
``INIT`` bits as ``LUT4(a, b, 0, 0)``. The generate must be ``a_i`` (when ``P = 0`` both addend
bits equal ``a_i``), so ``LUT4(a, b, 0, 0) = a ^ t(b, 0, 0)`` must be ``a``. A select that would
break this can take a constant-1 input (the way Yosys' own adder mapping ties ``D`` to 1).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import C, Cat, ClockSignal, Instance, Module, Mux, Signal, Value

__all__ = ["CARRY_TARGETS", "fused_add", "fused_init", "kept_reg"]

CARRY_TARGETS = (None, "generic", "ecp5")

TFunc = Callable[[object, object, object], object]


def _bit(v, i: int):
    """Bit ``i`` of ``v``: a 1-bit value is shared by every bit, a wider one is sign-extended."""
    v = Value.cast(v)
    if len(v) == 1:
        return v
    return v[min(i, len(v) - 1)] if v.shape().signed else (v[i] if i < len(v) else C(0, 1))


def fused_init(t: TFunc) -> int:
    """``CCU2C`` ``INIT`` of one bit: ``P = A ^ t(B, C, D)`` (LUT4 index ``{D, C, B, A}``)."""
    init = 0
    for idx in range(16):
        a, b, c, d = idx & 1, (idx >> 1) & 1, (idx >> 2) & 1, (idx >> 3) & 1
        if c == 0 and d == 0 and t(b, 0, 0) & 1:
            raise ValueError("fused_add: t(b, 0, 0) must be 0 (the CCU2C generate is LUT4(a, b, 0, 0))")
        init |= ((a ^ t(b, c, d)) & 1) << idx
    return init


def fused_add(m: Module, width: int, a, b, c, d, t: TFunc, cin=0, *, cin_inv: bool = False,
              target: str | None = None, name: str = "fadd") -> Signal:
    """``(a + T + cin) mod 2**width``, ``T_i = t(b_i, c_i, d_i)``, as a ``width``-bit signal.

    ``a``, ``b``, ``c``, ``d`` are values (a signed one is sign-extended, an unsigned one
    zero-extended, a 1-bit one is shared by every bit); ``t`` is written with ``&``, ``|`` and
    ``^ 1`` (not ``~``), so that it evaluates both on Amaranth bits and on Python 0/1.
    Combinational; one carry chain of ``width`` bits (on ECP5 ``ceil((width + 1) / 2)``
    ``CCU2C``: the carry in enters through the first half, see below). ``cin_inv``: the carry
    in is ``~cin`` (on ECP5 inverted by that half's LUT, not by a LUT of its own).
    """
    if target not in CARRY_TARGETS:
        raise ValueError(f"fused_add target must be one of {CARRY_TARGETS}, got {target!r}")
    init = fused_init(t)
    out = Signal(width, name=name)
    if target != "ecp5":
        tt = Cat(*[t(_bit(b, i), _bit(c, i), _bit(d, i)) for i in range(width)])
        ext = Cat(*[_bit(a, i) for i in range(width)])
        m.d.comb += out.eq(ext + tt + (Value.cast(cin) ^ int(cin_inv)))
        return out
    # Half 0 of the first CCU2C starts the chain: its LUT4 is 0 (C0 = D0 = 1 select INIT entries
    # 14, 15 = 0), so its carry out is its generate LUT2(A0, B0) = A0 = cin (INIT0 = 0x000A; ~A0
    # with 0x0005 for ``cin_inv``), in place of the feed-in cell nextpnr would otherwise add in
    # front of a chain whose CIN is a net, constant or not: a whole CCU2C. Bit i is half i + 1.
    # CIN of the first and COUT of the last CCU2C stay unconnected (rtl/_ecp5_netlist.py opens
    # the ones Yosys ties): a connected COUT makes nextpnr add a pass-out CCU2C.
    halves = [None, *range(width)]
    carry = None
    for k, lo in enumerate(range(0, len(halves), 2)):
        s = Signal(2, name=f"{name}_s{k}")
        ports = {"o_S0": s[0], "o_S1": s[1]}
        if carry is not None:
            ports["i_CIN"] = carry
        if lo + 2 < len(halves):
            carry = Signal(name=f"{name}_co{k}")
            ports["o_COUT"] = carry
        inits = []
        for h in range(2):
            bit = halves[lo + h] if lo + h < len(halves) else None
            if lo + h == 0:
                pins = (Value.cast(cin), C(1, 1), C(1, 1), C(1, 1))
                hinit = 0x0005 if cin_inv else 0x000A
            elif bit is None:                      # past the top bit: unused
                pins, hinit = (C(0, 1),) * 4, 0
            else:
                pins = tuple(_bit(v, bit) for v in (a, b, c, d))
                hinit = init
                m.d.comb += out[bit].eq(s[h])
            for pin, v in zip("ABCD", pins, strict=True):
                ports[f"i_{pin}{h}"] = v
            inits.append(hinit)
        m.submodules[f"{name}_{k}"] = Instance(
            "CCU2C", p_INIT0=C(inits[0], 16), p_INIT1=C(inits[1], 16), p_INJECT1_0="NO",
            p_INJECT1_1="NO", **ports)
    return out


def kept_reg(m: Module, d, *, target: str | None = None, name: str = "kept", init: int = 0,
             rst=None) -> Signal:
    """A 1-bit register (no enable) that synthesis keeps even if another register has the
    same input: on ECP5 a ``TRELLIS_FF`` instance, which Yosys' ``opt_merge`` leaves alone (it
    only merges its own cell types), so per-lane copies of a control flag stay separate and
    each drives a few loads instead of one flip-flop driving thousands. Otherwise a plain
    register (simulation: the same cycle behaviour). ``init``: the power-up value (0 or 1).
    ``rst``: optional synchronous reset to ``init`` (on ECP5 the flip-flop's own ``LSR``: no LUT
    in front of ``d``, which then reaches the flip-flop directly)."""
    if init not in (0, 1):
        raise ValueError(f"kept_reg init must be 0 or 1, got {init!r}")
    q = Signal(name=name, reset_less=True, init=init)
    if target == "ecp5":
        # (the power-up value is the set/reset value: REGSET)
        m.submodules[f"{name}_ff"] = Instance(
            "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
            p_SRMODE="LSR_OVER_CE", p_REGSET="SET" if init else "RESET",
            i_CLK=ClockSignal(), i_LSR=C(0, 1) if rst is None else rst, i_DI=d,
            o_Q=q)  # CE, M: unused, left open
    elif rst is None:
        m.d.sync += q.eq(d)
    else:
        m.d.sync += q.eq(Mux(rst, init, d))
    return q
