"""Differential integer LayerNorm unit (SPEC §5), bit-exact with
:func:`equispike.model.intops.int_layernorm`.

Stream protocol
---------------
``i_stream`` (payload ``signed(delta_width)``): the residual deltas ``ΔU(t)`` of one time step,
``rows`` rows (tokens) of ``dim`` channels, row-major, step after step, no framing bits.

``o_stream`` (payload ``{data, skip, last}``, see :func:`equispike.rtl.softmax_unit.out_layout`):
per input row, in order, either ``dim`` beats ``skip = 0`` with ``Y(t)[i] − Y(t−1)[i]`` (``last``
on the final one) when the row was recomputed (first step after reset or any nonzero delta), or
one beat ``skip = 1, last = 1, data = 0`` for an unchanged row. After a reset the unit zeroes its
state RAMs (``rows · dim + 1`` cycles, input not ready) and treats the next step as the first.
"""

from __future__ import annotations

from math import isqrt

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.intops import LayerNormParams
from ..model.widths import layernorm_output_bound, signed_bits
from ._arith import PipelinedDivider, SequentialIsqrt, check_int
from .softmax_unit import out_layout

__all__ = ["LayerNormUnit"]


class LayerNormUnit(wiring.Component):
    """Differential integer LayerNorm over rows of ``dim`` channels.

    Per row: ``X += ΔU`` (running sum in RAM, ``S1 = ΣX`` and ``S2 = ΣX²`` accumulated on the
    fly); if the row changed (or on the first step): ``σ = isqrt(D·S2 − S1² + E)`` (digit by
    digit, exact), then per channel ``c = D·X_i − S1``, ``(c·Γ_i) // σ`` by a pipelined restoring
    divider on ``|c·Γ_i|`` corrected to floor (``−(q + (r ≠ 0))`` for a negative product),
    arithmetic shift by ``K − P``, ``+ B_i``; emits ``y − Y_prev`` and stores ``y``.

    Latency and throughput (no overlap between rows), input and output at full rate:

    * changed row: ``dim`` cycles load + 1 decide + 1 radicand + 1 root start + ``ceil(Wr/2) + 1``
      square root (``Wr`` = radicand width) + ``dim + Wq + 2`` normalise/divide/emit (``Wq`` =
      quotient width): ``2·dim + Wq + ceil(Wr/2) + 6`` cycles (:meth:`cycles_per_row`), about
      2 cycles per element;
    * unchanged row: ``dim + 2`` cycles.

    Parameters
    ----------
    dim:
        Channels per row ``D``.
    rows:
        Rows per time step (tokens × batch).
    params:
        :class:`~equispike.model.intops.LayerNormParams` (``E``, ``K``, ``P``).
    gamma, beta:
        Integer ``Γ`` and ``B`` per channel (length ``dim``), held in ROMs.
    x_width:
        Signed width of the running input ``X`` (the residual, width analysis key ``residual``).
    delta_width:
        Signed width of the per-step input deltas; default ``x_width``.
    report, name:
        Optional width report and LayerNorm name (e.g. ``"blocks.0.ln1"``): ``x_width`` must cover
        ``residual`` and the internal widths must cover ``<name>.s1/.s2/.radicand/.product``.
    """

    def __init__(self, dim: int, rows: int, params: LayerNormParams, gamma, beta, x_width: int,
                 delta_width: int | None = None, *, report=None, name: str | None = None):
        self.dim = D = check_int("dim", dim, 1, 4096)
        self.rows = check_int("rows", rows, 1, 1 << 20)
        if not isinstance(params, LayerNormParams):
            raise TypeError(f"params must be a LayerNormParams, got {type(params).__name__}")
        self.params = params
        self.gamma = [int(g) for g in gamma]
        self.beta = [int(b) for b in beta]
        if len(self.gamma) != D or len(self.beta) != D:
            raise ValueError(f"gamma and beta need {D} entries, got {len(self.gamma)} and "
                             f"{len(self.beta)}")
        self.x_width = check_int("x_width", x_width, 2, 40)
        self.delta_width = check_int("delta_width", x_width if delta_width is None
                                     else delta_width, 1, 40)
        xlo, xhi = -(1 << (x_width - 1)), (1 << (x_width - 1)) - 1
        gmax = max(1, max(abs(g) for g in self.gamma))
        bmax = max(abs(b) for b in self.beta)
        self.gamma_width = signed_bits(min(self.gamma), max(self.gamma))
        self.beta_width = signed_bits(min(self.beta), max(self.beta))
        self.s1_width = signed_bits(D * xlo, D * xhi)
        self.s2_width = (D * xlo * xlo).bit_length()
        rad_max = D * D * xlo * xlo + params.E
        self.rad_width = rad_max.bit_length()
        self.sigma_width = max(1, isqrt(rad_max).bit_length())
        cmax = D * (xhi - xlo)
        self.c_width = signed_bits(-cmax, cmax)
        self.mag_width = max(1, (cmax * gmax).bit_length())  # |c·Γ|
        # |c_i| < sqrt(D−1)·(σ+1) <= 2σ·sqrt(D−1), so |c·Γ|/σ < 2·sqrt(D−1)·|Γ|max
        qmax = 2 * (isqrt(max(D - 1, 0)) + 1) * gmax
        self.quo_width = min(self.mag_width, qmax.bit_length())
        self.ymax = layernorm_output_bound(D, gmax, bmax, params)
        self.y_width = signed_bits(-self.ymax, self.ymax)
        self.out_width = signed_bits(-2 * self.ymax, 2 * self.ymax)
        self.sqrt_cycles = (self.rad_width + 1) // 2 + 1
        if report is not None:
            if name is None:
                raise ValueError("name is required when a width report is given")
            need = {"residual": self.x_width, f"{name}.s1": self.s1_width,
                    f"{name}.s2": self.s2_width + 1, f"{name}.radicand": self.rad_width + 1,
                    f"{name}.product": self.mag_width + 1}
            for key, have in need.items():
                if key not in report.bits:
                    raise KeyError(f"width report has no key {key!r}")
                if have < report.bits[key]:
                    raise ValueError(f"{key}: datapath of {have} bits is narrower than the width "
                                     f"analysis ({report.bits[key]} bits); raise x_width")
        super().__init__({
            "i_stream": In(stream.Signature(signed(self.delta_width))),
            "o_stream": Out(stream.Signature(out_layout(self.out_width))),
        })

    @classmethod
    def from_artifact(cls, art, name: str, rows: int | None = None, report=None):
        """Unit for LayerNorm ``name`` (``"blocks.i.ln1"``, ``"blocks.i.ln2"``, ``"norm"``).

        ``x_width`` is the residual width; the input delta width is one bit more (a step's
        residual increment spans the full residual range in both directions).
        """
        from ..model.widths import analyze

        report = analyze(art) if report is None else report
        T = art.tensors
        xw = report.bits["residual"]
        return cls(art.dims.dim, art.dims.tokens if rows is None else rows, art.ln_params(name),
                   T[f"{name}.gamma"], T[f"{name}.beta"], xw, xw + 1, report=report, name=name)

    def cycles_per_row(self, changed: bool = True) -> int:
        """Cycles of one row at full input/output rate."""
        if not changed:
            return self.dim + 2
        return 2 * self.dim + 5 + self.sqrt_cycles + self.quo_width

    def elaborate(self, platform):
        m = Module()
        D, K, P, E = self.dim, self.params.K, self.params.P, self.params.E
        depth = D * self.rows
        xw, yw = self.x_width, self.y_width
        jw = max(1, (D - 1).bit_length())

        m.submodules.xmem = xmem = memory.Memory(shape=signed(xw), depth=depth, init=[])
        m.submodules.ymem = ymem = memory.Memory(shape=signed(yw), depth=depth, init=[])
        xwp, ywp = xmem.write_port(), ymem.write_port()
        xr, yr = xmem.read_port(), ymem.read_port()
        m.submodules.xbuf = xbuf = memory.Memory(shape=signed(xw), depth=D, init=[])
        m.submodules.ybuf = ybuf = memory.Memory(shape=signed(yw), depth=D, init=[])
        xbw, xbr = xbuf.write_port(), xbuf.read_port(domain="comb")
        ybw, ybr = ybuf.write_port(), ybuf.read_port(domain="comb")
        m.submodules.gmem = gmem = memory.Memory(shape=signed(self.gamma_width), depth=D,
                                                 init=self.gamma)
        m.submodules.bmem = bmem = memory.Memory(shape=signed(self.beta_width), depth=D,
                                                 init=self.beta)
        gr, br = gmem.read_port(domain="comb"), bmem.read_port(domain="comb")

        pos = Signal(range(depth))
        pos_next = Mux(pos == depth - 1, 0, pos + 1)
        col = Signal(range(D))
        row = Signal(range(self.rows))
        base = Signal(range(depth))
        first = Signal(init=1)
        changed = Signal()
        accept = Signal()
        m.d.comb += [
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            xr.addr.eq(Mux(accept, pos_next, pos)),
            yr.addr.eq(Mux(accept, pos_next, pos)),
        ]
        x_new = Signal(signed(xw))
        m.d.comb += x_new.eq(xr.data + self.i_stream.payload)

        # S1, S2 from a registered copy of each new X
        xq, xq_v = Signal(signed(xw)), Signal()
        s1 = Signal(signed(self.s1_width))
        s2 = Signal(unsigned(self.s2_width))
        m.d.sync += [xq.eq(x_new), xq_v.eq(accept)]
        with m.If(xq_v):
            m.d.sync += [s1.eq(s1 + xq), s2.eq(s2 + xq * xq)]

        rad = Signal(self.rad_width)
        m.submodules.sqrt = sq = SequentialIsqrt(self.rad_width)
        sigma = Signal(self.sigma_width)

        # normalise pipeline
        o = self.o_stream
        m.submodules.div = div = PipelinedDivider(self.mag_width, self.sigma_width,
                                                  self.quo_width, jw + 1)
        en = Signal()
        m.d.comb += [en.eq(~div.o_valid | o.ready), div.en.eq(en)]
        jn = Signal(range(D + 1))
        v1, v2 = Signal(), Signal()
        j1, j2 = Signal(jw), Signal(jw)
        c1 = Signal(signed(self.c_width))
        prod2 = Signal(signed(self.mag_width + 1))

        def end_of_row():
            m.d.sync += [row.eq(Mux(row == self.rows - 1, 0, row + 1)), s1.eq(0), s2.eq(0)]
            with m.If(row == self.rows - 1):
                m.d.sync += first.eq(0)

        clr = Signal(range(depth + 1))
        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):  # after reset: zero the state RAMs, one word per cycle
                m.d.comb += [xwp.addr.eq(clr), xwp.data.eq(0), xwp.en.eq(clr < depth),
                             ywp.addr.eq(clr), ywp.data.eq(0), ywp.en.eq(clr < depth)]
                m.d.sync += clr.eq(clr + 1)
                with m.If(clr == depth):
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(accept):
                    m.d.comb += [
                        xwp.addr.eq(pos), xwp.data.eq(x_new), xwp.en.eq(1),
                        xbw.addr.eq(col), xbw.data.eq(x_new), xbw.en.eq(1),
                        ybw.addr.eq(col), ybw.data.eq(yr.data), ybw.en.eq(1),
                    ]
                    m.d.sync += [pos.eq(pos_next), col.eq(Mux(col == D - 1, 0, col + 1))]
                    with m.If(col == 0):
                        m.d.sync += [base.eq(pos), changed.eq(self.i_stream.payload != 0)]
                    with m.Else():
                        m.d.sync += changed.eq(changed | (self.i_stream.payload != 0))
                    with m.If(col == D - 1):
                        m.next = "DECIDE"
            with m.State("DECIDE"):  # the last X enters S1/S2 during this cycle
                with m.If(changed | first):
                    m.next = "RAD"
                with m.Else():
                    m.next = "SKIP"
            with m.State("SKIP"):
                m.d.comb += [o.valid.eq(1), o.payload.skip.eq(1), o.payload.last.eq(1)]
                with m.If(o.ready):
                    end_of_row()
                    m.next = "LOAD"
            with m.State("RAD"):
                m.d.sync += rad.eq(s2 * D - s1 * s1 + E)
                m.next = "SQRT"
            with m.State("SQRT"):
                m.d.comb += [sq.start.eq(1), sq.value.eq(rad)]
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):
                with m.If(sq.done):
                    m.d.sync += [sigma.eq(sq.root), jn.eq(0)]
                    m.next = "NORM"
            with m.State("NORM"):
                with m.If(en):
                    # stage 0 -> 1: c = D·x − S1
                    m.d.comb += xbr.addr.eq(jn)
                    m.d.sync += [v1.eq(jn < D), j1.eq(jn), c1.eq(xbr.data * D - s1)]
                    with m.If(jn < D):
                        m.d.sync += jn.eq(jn + 1)
                    # stage 1 -> 2: c·Γ
                    m.d.comb += gr.addr.eq(j1)
                    m.d.sync += [v2.eq(v1), j2.eq(j1), prod2.eq(c1 * gr.data)]
                # stage 2 -> divider: |c·Γ| / σ, sign in the tag
                neg = prod2 < 0
                m.d.comb += [div.i_valid.eq(v2), div.i_num.eq(Mux(neg, -prod2, prod2)),
                             div.i_den.eq(sigma), div.i_tag.eq(Cat(j2, neg))]
                # divider -> output: floor correction, shift, + B, − Y_prev
                jo = div.o_tag[:jw]
                q = Signal(signed(self.quo_width + 2))
                y = Signal(signed(yw))
                m.d.comb += [
                    q.eq(Mux(div.o_tag[jw], -div.o_quo - (div.o_rem != 0), div.o_quo)),
                    br.addr.eq(jo), ybr.addr.eq(jo),
                    y.eq((q >> (K - P)) + br.data),
                    o.valid.eq(div.o_valid),
                    o.payload.data.eq(y - ybr.data),
                    o.payload.last.eq(jo == D - 1),
                ]
                with m.If(div.o_valid & o.ready):
                    m.d.comb += [ywp.addr.eq(base + jo), ywp.data.eq(y), ywp.en.eq(1)]
                    with m.If(jo == D - 1):
                        m.d.sync += [v1.eq(0), v2.eq(0)]
                        end_of_row()
                        m.next = "LOAD"
        return m


def _synth_layernorm(params: dict) -> LayerNormUnit:
    """Synthesis factory: LN1 of block 0 of a random model (17 tokens, dim from the parameters)."""
    from ..model.factory import random_vit

    art = random_vit(0, dim=int(params.get("dim", 64)), heads=4, depth=1, levels=16)
    return LayerNormUnit.from_artifact(art, "blocks.0.ln1")


SYNTH_BLOCKS = {"layernorm": (_synth_layernorm, {"dim": 64}, [{"dim": 32}, {"dim": 64}])}
