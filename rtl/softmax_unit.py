"""Differential integer softmax unit (SPEC §5), bit-exact with :func:`equispike.model.intops.int_softmax`.

Stream protocol
---------------
``i_stream`` (payload ``signed(delta_width)``): the score deltas ``ΔZ(t)`` of one time step, every
row in order (``rows`` rows of ``n`` elements, row-major), step after step, with no framing bits:
the unit counts positions itself. Row ``r`` of a step is the ``r``-th group of ``n`` beats.

``o_stream`` (payload :data:`OutLayout` ``{data, skip, last}``): for every input row, in order,
either

* ``n`` beats ``skip = 0`` carrying ``Y(t)[j] − Y(t−1)[j]`` for ``j = 0..n−1`` (``last = 1`` on the
  ``n``-th), when the row was recomputed (first step after reset, or any nonzero delta in the row);
* or one beat ``skip = 1, last = 1, data = 0`` when the row did not change (all its deltas are 0:
  ``Y(t) = Y(t−1)``, the consumer applies zero current to the whole row).

So every input row yields exactly one output beat with ``last = 1``. State (running sums ``X``
and previous outputs ``Y``) lives in two RAMs of ``rows · n`` words and starts at zero after
reset: after a reset the unit first zeroes them (``rows · n + 1`` cycles, input not ready) and
the next step is treated as the first.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..model.intops import SoftmaxParams, exp2_lut
from ..model.widths import signed_bits
from ._arith import (
    PipelinedDivider,
    SplitRAM,
    check_int,
    clear_rams_state,
    const_mul,
    const_mul_latency,
    delay,
    load_pipeline,
    load_row_state,
    next_row,
)

__all__ = ["SoftmaxUnit", "out_layout"]


def out_layout(data_width: int) -> data.StructLayout:
    """Output beat of the differential norm units: ``{data: signed, skip: 1, last: 1}``."""
    return data.StructLayout({"data": signed(data_width), "skip": 1, "last": 1})


class SoftmaxUnit(wiring.Component):
    """Differential integer softmax over rows of ``n`` scores.

    Per row: ``X += ΔZ`` (running sum in RAM); if the row changed (or on the first step) it
    computes ``p = int_softmax(X, params)`` exactly (max; ``t = (d·C) >> H``; ``e = LUT[t mod 2^G]
    >> (t >> G)``, 0 once the shift exceeds ``F``; ``Σe``; ``p_j = floor(e_j·2^P / Σe)`` by a
    pipelined restoring divider of ``P + 1`` quotient bits, exact because ``e_j <= Σe``) and emits
    ``p − Y_prev``, storing ``p``.

    Timing structure (for ECP5 at >= 150 MHz): every register-to-register path holds at most one
    carry chain, one multiplier or a few LUT levels. The state RAMs are block RAMs split by bit
    slices (:class:`~equispike.rtl._arith.SplitRAM`, no multiplexer behind the RAM) and their read
    data is registered before the adder; the row buffers and the 2^x LUT are read from a registered
    address into a register; ``d·C`` is a registered shift-add tree
    (:func:`~equispike.rtl._arith.const_mul`, ``C`` is a constant; no DSP); the LUT read, the shift
    and ``Σe`` are separate stages; each divider stage is one ``(sum_width + 1)``-bit subtract; the
    output beats go through a credit-managed FIFO, so the datapath never stalls (no enable fanning
    out to every pipeline register). Rows are processed one at a time and each pass drains before
    the next starts (no read-after-write hazard on the state RAMs, the divisor ``Σe`` is held per
    row).

    Latency and throughput (one row at a time), input and output at full rate, with
    ``Le = 5 + ceil(log2(popcount(C)))`` (:attr:`exp_latency`), ``Ld = P + 4``
    (:attr:`div_latency`) and ``Lq = 2`` (:data:`OUT_QUEUE_LATENCY`):

    * changed row: ``n`` cycles load + 4 load pipeline/decide + ``n + Le`` exponent pass +
      ``n + Ld + Lq`` divide and emit: ``3n + Le + Ld + Lq + 4`` cycles from its first input beat to
      its last output beat (:meth:`cycles_per_row`; about 4.8 cycles per element for ``n = 17``;
      the next row's input is accepted ``Lq + 1`` cycles before that last beat);
    * unchanged row: ``n + Lq + 6`` cycles (one skip beat).

    Parameters
    ----------
    n:
        Row length (tokens).
    rows:
        Rows per time step (heads × query tokens × batch).
    params:
        :class:`~equispike.model.intops.SoftmaxParams` (``C``, ``G``, ``H``, ``F``, ``P``).
    score_width:
        Signed width of the running scores ``X`` (width analysis key ``blocks.i.scores``).
    delta_width:
        Signed width of the per-step score deltas (``blocks.i.scores.step``); default ``score_width``.
    ram_primitives:
        Build the state RAMs from ECP5 ``DP16KD`` instances with their output register
        (synthesis); default: equivalent Amaranth memories (simulation). See
        :class:`~equispike.rtl._arith.SplitRAM`.
    report, block:
        Optional width report (:func:`equispike.model.widths.analyze`) and block index: the widths
        are then checked against ``blocks.<block>.scores``, ``.scores.step``,
        ``.softmax.exponent_arg`` and ``.softmax.sum``.
    """

    def __init__(self, n: int, rows: int, params: SoftmaxParams, score_width: int,
                 delta_width: int | None = None, *, report=None, block: int | None = None,
                 ram_primitives: bool = False):
        self.ram_primitives = bool(ram_primitives)
        self.n = check_int("n", n, 1, 4096)
        self.rows = check_int("rows", rows, 1, 1 << 20)
        if not isinstance(params, SoftmaxParams):
            raise TypeError(f"params must be a SoftmaxParams, got {type(params).__name__}")
        self.params = params
        self.score_width = check_int("score_width", score_width, 2, 48)
        self.delta_width = check_int("delta_width", score_width if delta_width is None
                                     else delta_width, 1, 48)
        G, F, P, C = params.G, params.F, params.P, params.C
        zmax = (1 << (self.score_width - 1)) - 1
        zmin = -(1 << (self.score_width - 1))
        self.d_width = (zmax - zmin).bit_length()  # unsigned d = max - x
        self.prod_width = max(1, ((zmax - zmin) * C).bit_length())
        self.t_width = max(1, self.prod_width - params.H)
        self.sum_width = (self.n << F).bit_length()
        self.out_width = signed_bits(-(1 << P), 1 << P)
        self.lut = [int(v) for v in exp2_lut(G, F)]
        if report is not None:
            if block is None:
                raise ValueError("block is required when a width report is given")
            p = f"blocks.{block}."
            checks = (("score_width", self.score_width, p + "scores"),
                      ("delta_width", self.delta_width, p + "scores.step"))
            for name, have, key in checks:
                if key not in report.bits:
                    raise KeyError(f"width report has no key {key!r}")
                if have < report.bits[key]:
                    raise ValueError(f"{name} = {have} is narrower than the width analysis "
                                     f"{key} = {report.bits[key]} bits")
            if self.prod_width + 1 < report.bits[p + "softmax.exponent_arg"]:
                raise ValueError(f"exponent argument datapath ({self.prod_width} bits) narrower "
                                 f"than {p}softmax.exponent_arg")
            if self.sum_width + 1 < report.bits[p + "softmax.sum"]:
                raise ValueError(f"sum datapath ({self.sum_width} bits) narrower than "
                                 f"{p}softmax.sum")
        super().__init__({
            "i_stream": In(stream.Signature(signed(self.delta_width))),
            "o_stream": Out(stream.Signature(out_layout(self.out_width))),
        })

    @classmethod
    def from_artifact(cls, art, block: int, rows: int | None = None, report=None):
        """Unit for block ``block`` of an artifact, widths from the width analysis.

        ``rows`` defaults to ``heads · tokens`` (one image).
        """
        from ..model.widths import analyze

        report = analyze(art) if report is None else report
        p = f"blocks.{block}."
        n = art.dims.tokens
        return cls(n, art.dims.heads * n if rows is None else rows, art.softmax[block],
                   report.bits[p + "scores"], report.bits[p + "scores.step"],
                   report=report, block=block)

    @property
    def exp_latency(self) -> int:
        """Cycles from an element's ``x`` leaving the row buffer to its ``e`` entering ``Σe``."""
        return 5 + const_mul_latency(self.params.C)

    @property
    def div_latency(self) -> int:
        """Cycles from issuing an element to the divider to its output beat entering the queue."""
        return self.params.P + 4

    def cycles_per_row(self, changed: bool = True) -> int:
        """Cycles of one row at full input/output rate (the figure the docstring states)."""
        if not changed:
            return self.n + OUT_QUEUE_LATENCY + 6
        return 3 * self.n + self.exp_latency + self.div_latency + OUT_QUEUE_LATENCY + 4

    def elaborate(self, platform):
        m = Module()
        n, P, G, F, H = self.n, self.params.P, self.params.G, self.params.F, self.params.H
        depth = self.n * self.rows
        sw = self.score_width
        jw = max(1, (n - 1).bit_length())

        # state RAMs (block RAM, read data registered before any logic): running sums X and
        # previous outputs Y
        xmem = SplitRAM(m, "xmem", signed(sw), depth, self.ram_primitives)
        ymem = SplitRAM(m, "ymem", unsigned(P + 1), depth, self.ram_primitives)
        # row buffers (one row, distributed RAM: registered address in, read data registered)
        m.submodules.xbuf = xbuf = memory.Memory(shape=signed(sw), depth=n, init=[])
        m.submodules.ybuf = ybuf = memory.Memory(shape=unsigned(P + 1), depth=n, init=[])
        m.submodules.ebuf = ebuf = memory.Memory(shape=unsigned(F + 1), depth=n, init=[])
        xbw, xbr = xbuf.write_port(), xbuf.read_port(domain="comb")
        ybw, ybr = ybuf.write_port(), ybuf.read_port(domain="comb")
        ebw, ebr = ebuf.write_port(), ebuf.read_port(domain="comb")
        m.submodules.lut = lut = memory.Memory(shape=unsigned(F + 1), depth=1 << G, init=self.lut)
        lutr = lut.read_port(domain="comb")

        pos = Signal(range(depth))          # flat address of the next input element
        col = Signal(range(n))
        row = Signal(range(self.rows))
        base = Signal(range(depth))         # flat address of the current row's first element
        first = Signal(init=1)              # first step after reset
        changed = Signal()
        vmax = Signal(signed(sw))
        q = _OutQueue(m, self.o_stream, OUT_QUEUE_DEPTH(self.div_latency))

        # ---- load pipeline: A accept (RAM address = pos), A2 RAM, B RAM data registered, D X + ΔZ
        accept, st_c = load_pipeline(m, self.i_stream, pos, col, xmem, ymem,
                                     delta_shape=signed(self.delta_width), x_shape=signed(sw),
                                     y_shape=unsigned(P + 1), depth=depth, col_width=jw)
        c_v, c_x, c_y, c_pos, c_col, c_nz = st_c.v, st_c.x, st_c.y, st_c.pos, st_c.col, st_c.nz
        c_first = c_col == 0
        vdiff = Signal(signed(sw + 1))  # vmax − x: one carry chain, its sign picks the new max
        m.d.comb += vdiff.eq(vmax - c_x)
        changed_now = Mux(c_first, c_nz, changed | c_nz)
        with m.If(c_v):
            m.d.comb += [xmem.w_addr.eq(c_pos), xmem.w_data.eq(c_x), xmem.w_en.eq(1),
                         xbw.addr.eq(c_col), xbw.data.eq(c_x), xbw.en.eq(1),
                         ybw.addr.eq(c_col), ybw.data.eq(c_y), ybw.en.eq(1)]
            m.d.sync += [vmax.eq(Mux(c_first | vdiff[-1], c_x, vmax)), changed.eq(changed_now)]
        row_done = c_v & (c_col == n - 1)

        # ---- exponent pass: E1 x, E2 d = max − x, d·C (pipelined), E3 t split, E4 LUT, E5 shift
        j0 = Signal(range(n + 1))
        exp_run = Signal()
        e1_v, e2_v = Signal(), Signal()
        e1_j, e2_j = Signal(jw), Signal(jw)
        e1_x = Signal(signed(sw))
        e2_d = Signal(self.d_width)
        m.d.comb += xbr.addr.eq(j0)
        m.d.sync += [e1_v.eq(exp_run & (j0 < n)), e1_j.eq(j0), e1_x.eq(xbr.data),
                     e2_v.eq(e1_v), e2_j.eq(e1_j), e2_d.eq(vmax - e1_x)]
        # d·C as a registered shift-add tree in LUTs: a MULT18X18D without its internal registers
        # is 3.9 ns on its own in nextpnr's ECP5 model (about 140 MHz register to register)
        lat = const_mul_latency(self.params.C)
        prod = const_mul(m, e2_d, self.params.C, "dc")
        m_v, m_j = delay(m, e2_v, lat, "mv"), delay(m, e2_j, lat, "mj")
        t = prod >> H
        sh = t >> G
        shb = max(1, F.bit_length())
        e3_v, e4_v, e5_v = Signal(), Signal(), Signal()
        e3_j, e4_j, e5_j = Signal(jw), Signal(jw), Signal(jw)
        e3_idx = Signal(max(1, G))
        e3_z, e4_z = Signal(), Signal()
        e3_sh, e4_sh = Signal(shb), Signal(shb)
        e4_lut = Signal(F + 1)
        e5_e = Signal(F + 1)
        m.d.comb += lutr.addr.eq(e3_idx if G else 0)
        m.d.sync += [
            e3_v.eq(m_v), e3_j.eq(m_j), e3_idx.eq(t[:G] if G else 0), e3_z.eq(sh > F),
            e3_sh.eq(sh[:shb]),
            e4_v.eq(e3_v), e4_j.eq(e3_j), e4_z.eq(e3_z), e4_sh.eq(e3_sh), e4_lut.eq(lutr.data),
            e5_v.eq(e4_v), e5_j.eq(e4_j), e5_e.eq(Mux(e4_z, 0, e4_lut >> e4_sh)),
        ]
        total = Signal(self.sum_width)
        with m.If(e5_v):
            m.d.comb += [ebw.addr.eq(e5_j), ebw.data.eq(e5_e), ebw.en.eq(1)]
            m.d.sync += total.eq(total + e5_e)

        # ---- divide pass: I1 e, divider (P + 1 stages), Q1 Y_prev, Q2 output beat + Y store
        m.submodules.div = div = PipelinedDivider(F + 1 + P, self.sum_width, P + 1, jw)
        jd = Signal(range(n + 1))
        issue = Signal()
        i1_v = Signal()
        i1_j = Signal(jw)
        i1_e = Signal(F + 1)
        m.d.comb += ebr.addr.eq(jd[:jw])
        m.d.sync += [i1_v.eq(issue), i1_j.eq(jd), i1_e.eq(ebr.data)]
        with m.If(issue):
            m.d.sync += jd.eq(jd + 1)
        m.d.comb += [div.i_valid.eq(i1_v), div.i_num.eq(i1_e << P), div.i_den.eq(total),
                     div.i_tag.eq(i1_j)]
        q1_v = Signal()
        q1_j = Signal(jw)
        q1_quo, q1_y = Signal(P + 1), Signal(P + 1)
        m.d.comb += ybr.addr.eq(div.o_tag)
        m.d.sync += [q1_v.eq(div.o_valid), q1_j.eq(div.o_tag), q1_quo.eq(div.o_quo),
                     q1_y.eq(ybr.data)]
        yaddr = Signal(range(depth))
        q1_last = q1_j == n - 1
        m.d.sync += [q.w_valid.eq(q1_v), q.w_data.data.eq(q1_quo - q1_y), q.w_data.skip.eq(0),
                     q.w_data.last.eq(q1_last)]
        with m.If(q1_v):
            m.d.comb += [ymem.w_addr.eq(yaddr), ymem.w_data.eq(q1_quo), ymem.w_en.eq(1)]
            m.d.sync += yaddr.eq(yaddr + 1)

        def end_of_row():
            next_row(m, row, first, self.rows)

        clr = Signal(range(depth + 1))
        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):  # after reset: zero the state RAMs, one word per cycle
                clear_rams_state(m, (xmem, ymem), clr, depth)
            with m.State("LOAD"):
                load_row_state(m, self.i_stream.ready, accept, pos, col, base, depth, n)
            with m.State("DRAIN"):  # the row's last element reaches stage D (X stored, max known)
                with m.If(row_done):
                    with m.If(changed_now | first):
                        m.d.sync += [j0.eq(0), exp_run.eq(1), total.eq(0)]
                        m.next = "EXP"
                    with m.Else():
                        m.next = "SKIP"
            with m.State("SKIP"):
                with m.If(q.room):
                    m.d.comb += q.issue.eq(1)
                    m.d.sync += [q.w_valid.eq(1), q.w_data.skip.eq(1), q.w_data.last.eq(1),
                                 q.w_data.data.eq(0)]
                    end_of_row()
                    m.next = "LOAD"
            with m.State("EXP"):
                with m.If(j0 < n):
                    m.d.sync += j0.eq(j0 + 1)
                with m.Else():
                    m.d.sync += exp_run.eq(0)
                with m.If(e5_v & (e5_j == n - 1)):
                    m.d.sync += [jd.eq(0), yaddr.eq(base)]
                    m.next = "DIV"
            with m.State("DIV"):
                m.d.comb += [issue.eq((jd < n) & q.room), q.issue.eq(issue)]
                with m.If(q1_v & q1_last):
                    end_of_row()
                    m.next = "LOAD"
        return m


OUT_QUEUE_LATENCY = 2
"""Cycles from an output beat entering the output queue to it being offered on ``o_stream``."""


def OUT_QUEUE_DEPTH(pipeline_latency: int) -> int:  # noqa: N802
    """Output queue depth: a power of two covering the issue-to-queue latency plus the round trip
    of the credit (so that the credit never throttles a full-rate consumer)."""
    need = pipeline_latency + OUT_QUEUE_LATENCY + 4
    return 1 << max(2, (need - 1).bit_length())


class _OutQueue:
    """Credit-based output queue of the norm units.

    The datapath runs free (no stall enable fanning out to every pipeline register): an element is
    only issued into the pipeline when the queue is sure to have room for it (``room``: fewer than
    ``depth`` elements issued and not yet taken by the consumer), and its beat is written into a
    FIFO (``w_valid``/``w_data``, registers driven by the user) at the end of the pipeline. The FIFO
    output register drives ``o_stream``.
    """

    def __init__(self, m: Module, o, depth: int):
        layout = o.payload.shape()
        m.submodules.oq = fifo = SyncFIFOBuffered(width=layout.size, depth=depth)
        self.w_valid = Signal()
        self.w_data = Signal(layout)
        self.issue = Signal()
        self.room = Signal()
        used = Signal(range(depth + 1))
        pop = o.valid & o.ready
        m.d.comb += [fifo.w_en.eq(self.w_valid), fifo.w_data.eq(self.w_data),
                     o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data), fifo.r_en.eq(o.ready),
                     self.room.eq(used < depth)]
        m.d.sync += used.eq(used + self.issue - pop)


def _synth_softmax(params: dict) -> SoftmaxUnit:
    """Synthesis factory: block 0 of a random reference-size model (17 tokens, 64 dims, 4 heads)."""
    from ..model.factory import random_vit

    art = random_vit(0, dim=int(params.get("dim", 64)), heads=int(params.get("heads", 4)), depth=1,
                     levels=int(params.get("levels", 16)))
    unit = SoftmaxUnit.from_artifact(art, 0)
    # DP16KD with its output register on ECP5 (see SplitRAM); inferred RAM elsewhere
    unit.ram_primitives = params.get("family") == "ecp5"
    return unit


SYNTH_BLOCKS = {"softmax": (_synth_softmax, {"dim": 64, "heads": 4, "levels": 16},
                            [{"levels": 8}, {"levels": 16}, {"levels": 32}])}
