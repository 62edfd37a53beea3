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
from amaranth.lib.wiring import In, Out

from ..model.intops import SoftmaxParams, exp2_lut
from ..model.widths import signed_bits
from ._arith import PipelinedDivider, check_int

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

    Latency and throughput (one unit, no overlap between rows), with input and output at full rate:

    * changed row: ``n`` cycles load + 1 decide + ``n + 2`` cycles exponent pass + ``n + P + 1`` divide
      and emit, i.e. ``3n + P + 4`` cycles per row (``≈ 3`` cycles per element);
    * unchanged row: ``n`` cycles load + 1 decide + 1 skip beat = ``n + 2`` cycles.

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
    report, block:
        Optional width report (:func:`equispike.model.widths.analyze`) and block index: the widths
        are then checked against ``blocks.<block>.scores``, ``.scores.step``,
        ``.softmax.exponent_arg`` and ``.softmax.sum``.
    """

    def __init__(self, n: int, rows: int, params: SoftmaxParams, score_width: int,
                 delta_width: int | None = None, *, report=None, block: int | None = None):
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

    def cycles_per_row(self, changed: bool = True) -> int:
        """Cycles of one row at full input/output rate (the figure the docstring states)."""
        return 3 * self.n + self.params.P + 4 if changed else self.n + 2

    def elaborate(self, platform):
        m = Module()
        n, P, G, F, H = self.n, self.params.P, self.params.G, self.params.F, self.params.H
        depth = self.n * self.rows
        sw = self.score_width

        # state RAMs: running sums X and previous outputs Y
        m.submodules.xmem = xmem = memory.Memory(shape=signed(sw), depth=depth, init=[])
        m.submodules.ymem = ymem = memory.Memory(shape=unsigned(P + 1), depth=depth, init=[])
        xw, yw = xmem.write_port(), ymem.write_port()
        xr, yr = xmem.read_port(), ymem.read_port()
        # row buffers (one row, combinational read)
        m.submodules.xbuf = xbuf = memory.Memory(shape=signed(sw), depth=n, init=[])
        m.submodules.ybuf = ybuf = memory.Memory(shape=unsigned(P + 1), depth=n, init=[])
        m.submodules.ebuf = ebuf = memory.Memory(shape=unsigned(F + 1), depth=n, init=[])
        xbw, xbr = xbuf.write_port(), xbuf.read_port(domain="comb")
        ybw, ybr = ybuf.write_port(), ybuf.read_port(domain="comb")
        ebw, ebr = ebuf.write_port(), ebuf.read_port(domain="comb")
        m.submodules.lut = lut = memory.Memory(shape=unsigned(F + 1), depth=1 << G, init=self.lut)
        lutr = lut.read_port(domain="comb")

        pos = Signal(range(depth))          # flat address of the next input element
        pos_next = Mux(pos == depth - 1, 0, pos + 1)
        col = Signal(range(n))
        row = Signal(range(self.rows))
        base = Signal(range(depth))         # flat address of the current row's first element
        first = Signal(init=1)              # first step after reset
        changed = Signal()
        vmax = Signal(signed(sw))

        accept = Signal()
        m.d.comb += [
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            xr.addr.eq(Mux(accept, pos_next, pos)),
            yr.addr.eq(Mux(accept, pos_next, pos)),
        ]
        x_new = Signal(signed(sw))
        m.d.comb += x_new.eq(xr.data + self.i_stream.payload)

        # exponent pass pipeline
        j0 = Signal(range(n + 1))
        v1, v2 = Signal(), Signal()
        j1, j2 = Signal(range(n)), Signal(range(n))
        d1 = Signal(self.d_width)
        prod2 = Signal(self.prod_width)
        total = Signal(self.sum_width)

        # divider
        m.submodules.div = div = PipelinedDivider(F + 1 + P, self.sum_width, P + 1,
                                                  max(1, (n - 1).bit_length()))
        jd = Signal(range(n + 1))
        o = self.o_stream
        m.d.comb += div.en.eq(~div.o_valid | o.ready)

        def end_of_row():
            m.d.sync += row.eq(Mux(row == self.rows - 1, 0, row + 1))
            with m.If(row == self.rows - 1):
                m.d.sync += first.eq(0)

        clr = Signal(range(depth + 1))
        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):  # after reset: zero the state RAMs, one word per cycle
                m.d.comb += [xw.addr.eq(clr), xw.data.eq(0), xw.en.eq(clr < depth),
                             yw.addr.eq(clr), yw.data.eq(0), yw.en.eq(clr < depth)]
                m.d.sync += clr.eq(clr + 1)
                with m.If(clr == depth):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(accept):
                    m.d.comb += [
                        xw.addr.eq(pos), xw.data.eq(x_new), xw.en.eq(1),
                        xbw.addr.eq(col), xbw.data.eq(x_new), xbw.en.eq(1),
                        ybw.addr.eq(col), ybw.data.eq(yr.data), ybw.en.eq(1),
                    ]
                    m.d.sync += [pos.eq(pos_next), col.eq(Mux(col == n - 1, 0, col + 1))]
                    with m.If(col == 0):
                        m.d.sync += [base.eq(pos), vmax.eq(x_new),
                                     changed.eq(self.i_stream.payload != 0)]
                    with m.Else():
                        m.d.sync += [vmax.eq(Mux(x_new > vmax, x_new, vmax)),
                                     changed.eq(changed | (self.i_stream.payload != 0))]
                    with m.If(col == n - 1):
                        m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(changed | first):
                    m.d.sync += [j0.eq(0), total.eq(0)]
                    m.next = "EXP"
                with m.Else():
                    m.next = "SKIP"
            with m.State("SKIP"):
                m.d.comb += [o.valid.eq(1), o.payload.skip.eq(1), o.payload.last.eq(1)]
                with m.If(o.ready):
                    end_of_row()
                    m.next = "LOAD"
            with m.State("EXP"):
                # stage 0 -> 1: d = max - x
                m.d.comb += xbr.addr.eq(j0)
                m.d.sync += [v1.eq(j0 < n), j1.eq(j0), d1.eq(vmax - xbr.data)]
                with m.If(j0 < n):
                    m.d.sync += j0.eq(j0 + 1)
                # stage 1 -> 2: d·C
                m.d.sync += [v2.eq(v1), j2.eq(j1), prod2.eq(d1 * self.params.C)]
                # stage 2 -> 3: LUT and shift, e into the buffer, Σe
                t = prod2 >> H
                sh = t >> G
                e = Signal(F + 1)
                m.d.comb += [lutr.addr.eq(t[:G] if G else 0),
                             e.eq(Mux(sh > F, 0, lutr.data >> sh[:max(1, (F + 1).bit_length())]))]
                with m.If(v2):
                    m.d.comb += [ebw.addr.eq(j2), ebw.data.eq(e), ebw.en.eq(1)]
                    m.d.sync += total.eq(total + e)
                    with m.If(j2 == n - 1):
                        m.d.sync += [v1.eq(0), v2.eq(0), jd.eq(0)]
                        m.next = "DIV"
            with m.State("DIV"):
                m.d.comb += [ebr.addr.eq(jd[:max(1, (n - 1).bit_length())]),
                             div.i_valid.eq(jd < n),
                             div.i_num.eq(ebr.data << P),
                             div.i_den.eq(total),
                             div.i_tag.eq(jd)]
                with m.If(div.en & (jd < n)):
                    m.d.sync += jd.eq(jd + 1)
                m.d.comb += [ybr.addr.eq(div.o_tag),
                             o.valid.eq(div.o_valid),
                             o.payload.data.eq(div.o_quo - ybr.data),
                             o.payload.last.eq(div.o_tag == n - 1)]
                with m.If(div.o_valid & o.ready):
                    m.d.comb += [yw.addr.eq(base + div.o_tag), yw.data.eq(div.o_quo),
                                 yw.en.eq(1)]
                    with m.If(div.o_tag == n - 1):
                        end_of_row()
                        m.next = "LOAD"
        return m


def _synth_softmax(params: dict) -> SoftmaxUnit:
    """Synthesis factory: block 0 of a random reference-size model (17 tokens, 64 dims, 4 heads)."""
    from ..model.factory import random_vit

    art = random_vit(0, dim=int(params.get("dim", 64)), heads=int(params.get("heads", 4)), depth=1,
                     levels=int(params.get("levels", 16)))
    return SoftmaxUnit.from_artifact(art, 0)


SYNTH_BLOCKS = {"softmax": (_synth_softmax, {"dim": 64, "heads": 4, "levels": 16},
                            [{"levels": 8}, {"levels": 16}, {"levels": 32}])}
