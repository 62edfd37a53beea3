"""Arithmetic building blocks of the differential norm units, built for a short critical path
(ECP5 at >= 150 MHz: every stage is at most one carry chain or a few LUT levels, register to
register).

* :class:`PipelinedDivider` -- unsigned restoring division, one quotient bit per stage, fully
  pipelined and free running (one division per cycle, latency = quotient bits). Each stage is one
  subtract-compare of ``den_width + 1`` bits (only the bits of the partial remainder that can
  reach the shifted divisor take part).
* :class:`SequentialIsqrt` -- exact floor square root, two radicand bits per cycle, one result bit
  per cycle; each step is one subtract-compare of ``ceil(width / 2) + 3`` bits.
* :func:`pipelined_mul` -- unsigned product split into 18-bit limbs (one ECP5 ``MULT18X18D`` each),
  partial products registered, then a registered adder tree.
* :func:`const_mul` -- product by a constant as a registered shift-add tree (no multiplier).
* :func:`delay` -- a value delayed by a number of cycles (register chain).

Floor (toward −∞) division of a signed numerator is done by the users from the unsigned
quotient and remainder of the magnitude: ``n // d = -(q + (r != 0))`` when ``n < 0``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._bram import RegisteredRAM

__all__ = ["SplitRAM", "load_pipeline", "LoadStageC",
           "PipelinedDivider", "SequentialIsqrt", "check_int", "pipelined_mul", "mul_latency",
           "const_mul", "const_mul_latency", "delay", "LIMB"]

LIMB = 18
"""Operand limb of :func:`pipelined_mul`: the ECP5 ``MULT18X18D`` takes 18 × 18 unsigned."""


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """Validate a generator parameter: an ``int`` (not ``bool``) in ``[lo, hi]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def delay(m: Module, value, cycles: int, name: str = "dly", reset_less: bool = False):
    """``value`` delayed by ``cycles`` registers (``cycles = 0``: ``value`` itself)."""
    value = Value.cast(value)
    for i in range(cycles):
        r = Signal(value.shape(), name=f"{name}_{i}", reset_less=reset_less)
        m.d.sync += r.eq(value)
        value = r
    return value


def _tree_levels(terms: int) -> int:
    lv = 0
    while terms > 1:
        terms = (terms + 1) // 2
        lv += 1
    return lv


def _add_tree(m: Module, terms: list, name: str):
    """Registered pairwise adder tree over ``(value, shift)`` terms; one level per cycle."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            if k + 1 < len(terms):
                (a, sa), (b, sb) = terms[k], terms[k + 1]
                lo = min(sa, sb)
                expr = (a << (sa - lo)) + (b << (sb - lo))
                r = Signal(expr.shape(), name=f"{name}_l{level}_{k // 2}", reset_less=True)
                m.d.sync += r.eq(expr)
                nxt.append((r, lo))
            else:
                a, sa = terms[k]
                nxt.append((delay(m, a, 1, f"{name}_l{level}_{k // 2}", True), sa))
        terms = nxt
        level += 1
    v, s = terms[0]
    return v << s


def _limbs(width: int) -> list[tuple[int, int]]:
    return [(lo, min(width, lo + LIMB)) for lo in range(0, width, LIMB)]


def mul_latency(a_width: int, b) -> int:
    """Latency (cycles) of :func:`pipelined_mul` for an ``a_width``-bit ``a`` and ``b`` (a value,
    or an ``int`` constant)."""
    if isinstance(b, int):
        nb = max(1, sum(1 for lo, hi in _limbs(max(1, b.bit_length()))
                        if (b >> lo) & ((1 << (hi - lo)) - 1)))
    else:
        nb = len(_limbs(len(Value.cast(b))))
    return 1 + _tree_levels(len(_limbs(a_width)) * nb)


def pipelined_mul(m: Module, a, b, name: str = "mul"):
    """Unsigned ``a · b`` (``b`` a value or a non-negative ``int`` constant), :func:`mul_latency`
    cycles later.

    The operands are split into 18-bit limbs; every limb product (one DSP) goes straight into a
    register, and the partial products are summed by a registered adder tree, so no path holds more
    than one multiplier or one adder. ``a`` and ``b`` should be register outputs (the multiplier
    inputs are then registered too).
    """
    a = Value.cast(a)
    wa = len(a)
    if isinstance(b, int):
        if b < 0:
            raise ValueError("pipelined_mul takes a non-negative constant")
        bl = [(lo, Const((b >> lo) & ((1 << (hi - lo)) - 1), hi - lo))
              for lo, hi in _limbs(max(1, b.bit_length()))]
        bl = [(lo, c) for lo, c in bl if c.value] or [(0, Const(0, 1))]
    else:
        b = Value.cast(b)
        bl = [(lo, b[lo:hi]) for lo, hi in _limbs(len(b))]
    terms = []
    for i, (alo, ahi) in enumerate(_limbs(wa)):
        for j, (blo, bv) in enumerate(bl):
            expr = a[alo:ahi] * bv
            p = Signal(expr.shape(), name=f"{name}_p{i}_{j}", reset_less=True)
            m.d.sync += p.eq(expr)
            terms.append((p, alo + blo))
    return _add_tree(m, terms, name)


def const_mul_latency(k: int) -> int:
    """Latency (cycles) of :func:`const_mul` by ``k``."""
    return _tree_levels(max(1, bin(k).count("1")))


def const_mul(m: Module, x, k: int, name: str = "cmul"):
    """``x · k`` for a constant ``k >= 0`` as a registered shift-add tree over the set bits of
    ``k``, :func:`const_mul_latency` cycles later (0 cycles, plain wiring, for a power of two)."""
    if k < 0:
        raise ValueError("const_mul takes a non-negative constant")
    x = Value.cast(x)
    terms = [(x, i) for i in range(k.bit_length()) if (k >> i) & 1]
    if not terms:
        return Const(0, 1)
    return _add_tree(m, terms, name)


# -- row control shared by the differential norm units ---------------------------------------
def next_row(m: Module, row, first, rows: int) -> None:
    """Advance the row counter; the first step ends after the last row."""
    m.d.sync += row.eq(Mux(row == rows - 1, 0, row + 1))
    with m.If(row == rows - 1):
        m.d.sync += first.eq(0)


def clear_rams_state(m: Module, mems, clr, depth: int) -> None:
    """FSM state body: zero ``mems`` (:class:`SplitRAM`) one word per cycle, then go to ``LOAD``."""
    for mem in mems:
        m.d.comb += [mem.w_addr.eq(clr), mem.w_data.eq(0), mem.w_en.eq(clr < depth)]
    m.d.sync += clr.eq(clr + 1)
    with m.If(clr == depth):
        m.next = "LOAD"


def load_row_state(m: Module, ready, accept, pos, col, base, depth: int, width: int) -> None:
    """FSM state body: accept one row of ``width`` elements into the circular position ``pos``;
    ``base`` keeps the row's first position; go to ``DRAIN`` after the last element."""
    m.d.comb += ready.eq(1)
    with m.If(accept):
        m.d.sync += [pos.eq(Mux(pos == depth - 1, 0, pos + 1)),
                     col.eq(Mux(col == width - 1, 0, col + 1))]
        with m.If(col == 0):
            m.d.sync += base.eq(pos)
        with m.If(col == width - 1):
            m.next = "DRAIN"


class LoadStageC:
    """Stage C of :func:`load_pipeline`: one element of the row with its stored state."""

    def __init__(self, v, x, y, pos, col, nz):
        self.v, self.x, self.y, self.pos, self.col, self.nz = v, x, y, pos, col, nz


def load_pipeline(m: Module, i_stream, pos, col, xmem: SplitRAM, ymem: SplitRAM, *, delta_shape,
                  x_shape, y_shape, depth: int, col_width: int):
    """Load pipeline of the differential norm units (one definition for softmax and LayerNorm).

    A: an input element ``ΔU`` is accepted at flat position ``pos`` (its stored ``X`` and ``Y``
    are read at that address: :class:`SplitRAM`, read latency 2); A2: the RAMs; B: their data
    and ``ΔU != 0``; C: ``X + ΔU`` registered with ``Y``, the position and the column. Returns
    ``(accept, stage_c)``: the ``i_stream`` handshake (the caller drives ``ready``) and a
    :class:`LoadStageC`. The caller writes ``stage_c.x`` back and accumulates the row.
    """
    accept = Signal()
    m.d.comb += [accept.eq(i_stream.valid & i_stream.ready), xmem.r_addr.eq(pos), ymem.r_addr.eq(pos)]
    a_v, a2_v, b_v, c_v = Signal(), Signal(), Signal(), Signal()
    a_p, a2_p, b_p = (Signal(delta_shape) for _ in range(3))
    a_pos, a2_pos, b_pos, c_pos = (Signal(range(depth)) for _ in range(4))
    a_col, a2_col, b_col, c_col = (Signal(col_width) for _ in range(4))
    b_x = Signal(x_shape, name="b_x", reset_less=True)
    c_x = Signal(x_shape, name="c_x", reset_less=True)
    b_y = Signal(y_shape, name="b_y", reset_less=True)
    c_y = Signal(y_shape, name="c_y", reset_less=True)
    b_nz, c_nz = Signal(), Signal()
    m.d.sync += [
        a_v.eq(accept), a_p.eq(i_stream.payload), a_pos.eq(pos), a_col.eq(col),
        a2_v.eq(a_v), a2_p.eq(a_p), a2_pos.eq(a_pos), a2_col.eq(a_col),
        b_v.eq(a2_v), b_p.eq(a2_p), b_pos.eq(a2_pos), b_col.eq(a2_col), b_nz.eq(a2_p != 0),
        b_x.eq(xmem.r_data), b_y.eq(ymem.r_data),
        c_v.eq(b_v), c_x.eq(b_x + b_p), c_y.eq(b_y), c_pos.eq(b_pos), c_col.eq(b_col),
        c_nz.eq(b_nz),
    ]
    return accept, LoadStageC(c_v, c_x, c_y, c_pos, c_col, c_nz)


class SplitRAM:
    """A state RAM (one write port, one read port) with a **registered read output**: a
    :class:`~equispike.rtl._bram.RegisteredRAM` added to ``m`` as submodule ``name``.

    Read latency 2 cycles: ``r_data`` belongs to the ``r_addr`` of two cycles before.
    ``primitive=False`` (simulation, default): the inferred form, whose read/write collisions are
    poisoned, so the bit-exact tests prove the users never consume one (the norm units write a
    row's words several cycles after reading them and read them again only in a later row).
    ``primitive=True`` (synthesis for ECP5): ``DP16KD`` columns with ``REGMODE = OUTREG``.
    """

    def __init__(self, m: Module, name: str, shape, depth: int, primitive: bool = False):
        ram = RegisteredRAM(shape, max(depth, 2), target="ecp5" if primitive else None)
        m.submodules[name] = ram
        self.w_addr, self.w_data, self.w_en = ram.w_addr, ram.w_data, ram.w_en
        self.r_addr, self.r_data = ram.r_addr, ram.r_data


class PipelinedDivider(wiring.Component):
    """Unsigned restoring divider, fully pipelined, free running.

    Computes ``quo = num // den`` and ``rem = num % den`` for ``den >= 1`` under the precondition
    ``num < den · 2^quo_width`` (the quotient fits ``quo_width`` bits); a tag travels alongside.

    Stage ``b`` (quotient bit ``b``, from the top) holds a partial remainder ``< den · 2^(b+1)``, so
    only its bits from ``b`` upwards (``den_width + 1`` of them) meet the shifted divisor: one
    ``den_width + 1``-bit subtract, its borrow picks the new remainder (a 2-input mux) — a short carry
    chain per stage whatever the numerator width.

    ``den`` is **not** carried down the pipeline: it must stay constant while divisions are in
    flight (the norm units divide a whole row by one denominator and drain the divider before the
    next row's denominator is set).

    Latency: ``quo_width`` cycles (one registered stage per quotient bit). Throughput: one division
    per cycle. No stall: the users bound the number in flight by credits.
    """

    def __init__(self, num_width: int, den_width: int, quo_width: int, tag_width: int = 1):
        self.num_width = check_int("num_width", num_width, 1)
        self.den_width = check_int("den_width", den_width, 1)
        self.quo_width = check_int("quo_width", quo_width, 1)
        self.tag_width = check_int("tag_width", tag_width, 1)
        super().__init__({
            "i_valid": In(1),
            "i_num": In(num_width),
            "i_den": In(den_width),
            "i_tag": In(tag_width),
            "o_valid": Out(1),
            "o_quo": Out(quo_width),
            "o_rem": Out(den_width),
            "o_tag": Out(tag_width),
        })

    def elaborate(self, platform):
        m = Module()
        dw = self.den_width
        den = self.i_den
        valid, rem, quo, tag = self.i_valid, self.i_num, None, self.i_tag
        for b in reversed(range(self.quo_width)):
            # rem < den << (b + 1): rem[b:] < 2·den fits dw + 1 bits
            hi = rem[b:b + dw + 1] if len(rem) > b else Const(0, 1)
            diff = Signal(dw + 2, name=f"diff{b}")
            m.d.comb += diff.eq(hi - den)
            fits = ~diff[-1]
            n_valid = Signal(name=f"v{b}")
            n_rem = Signal(b + dw, name=f"r{b}", reset_less=True)
            n_quo = Signal(unsigned(self.quo_width - b), name=f"q{b}", reset_less=True)
            n_tag = Signal(self.tag_width, name=f"t{b}", reset_less=True)
            m.d.sync += [
                n_valid.eq(valid),
                n_rem.eq(Cat(rem[:b], Mux(fits, diff[:dw], hi[:dw]))),
                n_tag.eq(tag),
                n_quo.eq(fits if quo is None else Cat(fits, quo)),
            ]
            valid, rem, quo, tag = n_valid, n_rem, n_quo, n_tag
        m.d.comb += [
            self.o_valid.eq(valid),
            self.o_quo.eq(quo),
            self.o_rem.eq(rem),
            self.o_tag.eq(tag),
        ]
        return m


class SequentialIsqrt(wiring.Component):
    """Exact floor square root of an unsigned ``width``-bit value, one result bit per cycle.

    Classic digit-by-digit recurrence on a shifting radicand: each cycle brings down the next two
    radicand bits, ``rem = 4·rem + bits``, tries ``trial = 4·root + 1``, and on ``rem >= trial``
    subtracts and appends a 1 to ``root`` (else a 0). ``rem <= 2·root`` throughout, so the subtract
    is ``ceil(width / 2) + 3`` bits wide (not ``width``). The result is the exact floor square root,
    the same integer :func:`equispike.model.intops.isqrt` defines.

    Latency: ``ceil(width / 2) + 1`` cycles from ``start`` to ``done``; one root at a time.
    ``start`` is sampled when ``busy`` is low; ``root`` is valid while ``done`` is high (one cycle)
    and stays until the next ``start``.
    """

    def __init__(self, width: int):
        self.width = check_int("width", width, 1)
        self.iters = (width + 1) // 2
        super().__init__({
            "start": In(1),
            "value": In(width),
            "busy": Out(1),
            "done": Out(1),
            "root": Out(self.iters),
        })

    def elaborate(self, platform):
        m = Module()
        it = self.iters
        rad = Signal(2 * it)
        rem = Signal(it + 1)
        root = Signal(it)
        cnt = Signal(range(it + 1))
        rem4 = Signal(it + 3)
        diff = Signal(it + 4)
        m.d.comb += [
            rem4.eq(Cat(rad[-2:], rem)),
            diff.eq(rem4 - Cat(Const(1, 2), root)),
            self.root.eq(root),
        ]
        fits = ~diff[-1]
        m.d.sync += self.done.eq(0)
        with m.If(~self.busy):
            with m.If(self.start):
                m.d.sync += [
                    rad.eq(self.value),
                    rem.eq(0),
                    root.eq(0),
                    cnt.eq(it),
                    self.busy.eq(1),
                ]
        with m.Else():
            m.d.sync += [
                rad.eq(rad << 2),
                rem.eq(Mux(fits, diff, rem4)),
                root.eq(Cat(fits, root)),
                cnt.eq(cnt - 1),
            ]
            with m.If(cnt == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
