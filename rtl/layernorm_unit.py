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
from ._arith import (
    PipelinedDivider,
    SequentialIsqrt,
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
from ._dsp import check_dsp_target, registered_mul, registered_mul_latency
from .softmax_unit import OUT_QUEUE_DEPTH, OUT_QUEUE_LATENCY, _OutQueue, out_layout

__all__ = ["LayerNormUnit"]


class LayerNormUnit(wiring.Component):
    """Differential integer LayerNorm over rows of ``dim`` channels.

    Per row: ``X += ΔU`` (running sum in RAM, ``S1 = ΣX`` and ``S2 = ΣX²`` accumulated on the
    fly); if the row changed (or on the first step): ``σ = isqrt(D·S2 − S1² + E)`` (digit by
    digit, exact), then per channel ``c = D·X_i − S1``, ``(c·Γ_i) // σ`` by a pipelined restoring
    divider on ``|c·Γ_i|`` corrected to floor (``−(q + (r ≠ 0))`` for a negative product),
    arithmetic shift by ``K − P``, ``+ B_i``; emits ``y − Y_prev`` and stores ``y``.

    Timing structure (for ECP5 at >= 150 MHz): every register-to-register path holds at most one
    carry chain, one multiplier or a few LUT levels. State RAMs split by bit slices
    (:class:`~equispike.rtl._arith.SplitRAM`) with registered read data; ``X²``, ``S1²`` and
    ``|c|·|Γ|`` are DSP products with their input, pipeline and output registers inside the DSP
    block (one ``MULT18X18D`` per 18-bit limb pair for ``dsp_target="ecp5"``) and a registered adder
    tree (:func:`~equispike.rtl._dsp.registered_mul`, operands from fabric registers); ``D·S2`` and
    ``D·X`` are registered shift-add trees (:func:`~equispike.rtl._arith.const_mul`, plain wiring
    for a power-of-two ``D``); the radicand, ``c``, ``|c|``, the floor correction, the shift + ``B``
    and the delta are separate stages; the square root does one ``ceil(Wr/2) + 3``-bit subtract per
    cycle and each divider stage one ``(σ width + 1)``-bit subtract; ``Γ`` is stored as ``|Γ|`` and
    a sign bit; output beats go through a credit-managed FIFO (no stall enable). Rows are processed
    one at a time and each pass drains before the next starts (no RAM read-after-write hazard; ``σ``
    is held per row).

    Latency and throughput (one row at a time), input and output at full rate, with
    ``Lm(·)`` the :func:`~equispike.rtl._dsp.registered_mul_latency` of a product (3 + one cycle
    per adder-tree level), ``Ll = 5 + Lm(X²)`` (:attr:`load_latency`), ``Lr = 2 + max(Lm(S1²),
    const_mul_latency(D))`` (:attr:`rad_latency`), ``Ls = ceil(Wr/2) + 1`` square root (``Wr`` =
    radicand width), ``Ln = 9 + const_mul_latency(D) + Lm(|c|·|Γ|) + Wq`` (:attr:`norm_latency`,
    ``Wq`` = quotient width) and ``Lq = 2`` (:data:`~equispike.rtl.softmax_unit.OUT_QUEUE_LATENCY`):

    * changed row: ``2·dim + Ll + Lr + Ls + Ln + Lq`` cycles from its first input beat to its last
      output beat (:meth:`cycles_per_row`; 134 for the ``dim = 32`` factory model of
      ``equispike bench units``, about 4 cycles per element);
    * unchanged row: ``dim + Ll + Lq + 2`` cycles (one skip beat).

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
    ram_primitives:
        Build the state RAMs from ECP5 ``DP16KD`` instances with their output register
        (synthesis); default: equivalent Amaranth memories (simulation). See
        :class:`~equispike.rtl._arith.SplitRAM`.
    dsp_target:
        Target of the multipliers (:class:`~equispike.rtl._dsp.RegisteredMul`): ``None`` or
        ``"generic"`` (default: Amaranth registers and ``*``, any simulator), ``"ecp5"``
        (``MULT18X18D`` instances with their registers; simulate with
        ``sim/models/MULT18X18D.v``). The same cycle behaviour either way.
    report, name:
        Optional width report and LayerNorm name (e.g. ``"blocks.0.ln1"``): ``x_width`` must cover
        ``residual`` and the internal widths must cover ``<name>.s1/.s2/.radicand/.product``.
    """

    def __init__(self, dim: int, rows: int, params: LayerNormParams, gamma, beta, x_width: int,
                 delta_width: int | None = None, *, report=None, name: str | None = None,
                 ram_primitives: bool = False, dsp_target: str | None = None):
        self.ram_primitives = bool(ram_primitives)
        self.dsp_target = check_dsp_target("dsp_target", dsp_target)
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
    def from_artifact(cls, art, name: str, rows: int | None = None, report=None, *,
                      ram_primitives: bool = False, dsp_target: str | None = None):
        """Unit for LayerNorm ``name`` (``"blocks.i.ln1"``, ``"blocks.i.ln2"``, ``"norm"``).

        ``x_width`` is the residual width; the input delta width is one bit more (a step's
        residual increment spans the full residual range in both directions). ``ram_primitives``
        and ``dsp_target`` as in the constructor.
        """
        from ..model.widths import analyze

        report = analyze(art) if report is None else report
        T = art.tensors
        xw = report.bits["residual"]
        return cls(art.dims.dim, art.dims.tokens if rows is None else rows, art.ln_params(name),
                   T[f"{name}.gamma"], T[f"{name}.beta"], xw, xw + 1, report=report, name=name,
                   ram_primitives=ram_primitives, dsp_target=dsp_target)

    @property
    def load_latency(self) -> int:
        """Cycles from a row's last input beat to the cycle its ``S1``/``S2`` complete."""
        return 5 + registered_mul_latency(self.x_width, self.x_width)

    @property
    def rad_latency(self) -> int:
        """Cycles from ``S1``/``S2`` complete to the radicand registered."""
        return 2 + max(registered_mul_latency(self.s1_width, self.s1_width),
                       const_mul_latency(self.dim))

    @property
    def norm_latency(self) -> int:
        """Cycles from issuing a channel to its output beat entering the output queue."""
        return (5 + const_mul_latency(self.dim)
                + registered_mul_latency(self.c_width, max(1, self.gamma_width - 1))
                + self.quo_width + 4)

    def cycles_per_row(self, changed: bool = True) -> int:
        """Cycles of one row at full input/output rate."""
        if not changed:
            return self.dim + self.load_latency + OUT_QUEUE_LATENCY + 2
        return (2 * self.dim + self.load_latency + self.rad_latency + self.sqrt_cycles
                + self.norm_latency + OUT_QUEUE_LATENCY)

    def elaborate(self, platform):
        m = Module()
        D, K, P, E = self.dim, self.params.K, self.params.P, self.params.E
        depth = D * self.rows
        xw, yw = self.x_width, self.y_width
        jw = max(1, (D - 1).bit_length())
        gw = max(1, self.gamma_width - 1)  # |Γ| (the ROM holds |Γ| and the sign separately)

        xmem = SplitRAM(m, "xmem", signed(xw), depth, self.ram_primitives)
        ymem = SplitRAM(m, "ymem", signed(yw), depth, self.ram_primitives)
        m.submodules.xbuf = xbuf = memory.Memory(shape=signed(xw), depth=D, init=[])
        m.submodules.ybuf = ybuf = memory.Memory(shape=signed(yw), depth=D, init=[])
        xbw, xbr = xbuf.write_port(), xbuf.read_port(domain="comb")
        ybw, ybr = ybuf.write_port(), ybuf.read_port(domain="comb")
        m.submodules.gmem = gmem = memory.Memory(
            shape=unsigned(gw + 1), depth=D,
            init=[abs(g) | (int(g < 0) << gw) for g in self.gamma])
        m.submodules.bmem = bmem = memory.Memory(shape=signed(self.beta_width), depth=D,
                                                 init=self.beta)
        gr, br = gmem.read_port(domain="comb"), bmem.read_port(domain="comb")

        pos = Signal(range(depth))
        col = Signal(range(D))
        row = Signal(range(self.rows))
        base = Signal(range(depth))
        first = Signal(init=1)
        changed = Signal()
        q = _OutQueue(m, self.o_stream, OUT_QUEUE_DEPTH(self.norm_latency))

        # ---- load pipeline: A accept (RAM address = pos), A2 RAM, B RAM data registered, D X + ΔU;
        # S1 at D, S2 through |X|, X² (registered DSP multiplier)
        accept, st_c = load_pipeline(m, self.i_stream, pos, col, xmem, ymem,
                                     delta_shape=signed(self.delta_width), x_shape=signed(xw),
                                     y_shape=signed(yw), depth=depth, col_width=jw)
        c_v, c_x, c_y, c_pos, c_col, c_nz = st_c.v, st_c.x, st_c.y, st_c.pos, st_c.col, st_c.nz
        c_first = c_col == 0
        s1 = Signal(signed(self.s1_width))
        s2 = Signal(unsigned(self.s2_width))
        with m.If(c_v):
            m.d.comb += [xmem.w_addr.eq(c_pos), xmem.w_data.eq(c_x), xmem.w_en.eq(1),
                         xbw.addr.eq(c_col), xbw.data.eq(c_x), xbw.en.eq(1),
                         ybw.addr.eq(c_col), ybw.data.eq(c_y), ybw.en.eq(1)]
            m.d.sync += [s1.eq(Mux(c_first, c_x, s1 + c_x)),
                         changed.eq(Mux(c_first, c_nz, changed | c_nz))]
        d_v, d_first, d_last = Signal(), Signal(), Signal()
        d_abs = Signal(xw)
        m.d.sync += [d_v.eq(c_v), d_first.eq(c_first), d_last.eq(c_col == D - 1),
                     d_abs.eq(Mux(c_x < 0, -c_x, c_x))]
        lsq = registered_mul_latency(xw, xw)
        sq = registered_mul(m, d_abs, d_abs, "sq", self.dsp_target)
        sq_v, sq_first = delay(m, d_v, lsq, "sqv"), delay(m, d_first, lsq, "sqf")
        sq_last = delay(m, d_last, lsq, "sql")
        with m.If(sq_v):
            m.d.sync += s2.eq(Mux(sq_first, sq, s2 + sq))
        s_done = sq_v & sq_last  # the row's S1 and S2 are complete after this cycle

        # ---- radicand D·S2 − S1² + E (free running on the held S1, S2; valid rad_latency
        # cycles after they are complete)
        s1a = Signal(self.s1_width)
        m.d.sync += s1a.eq(Mux(s1 < 0, -s1, s1))
        s1sq = registered_mul(m, s1a, s1a, "s1sq", self.dsp_target)
        ds2e = Signal(self.rad_width)  # D·S2 + E <= the largest radicand
        m.d.sync += ds2e.eq(const_mul(m, s2, D, "ds2") + E)
        rad = Signal(self.rad_width)
        m.d.sync += rad.eq(ds2e - s1sq)
        m.submodules.sqrt = sqr = SequentialIsqrt(self.rad_width)
        sigma = Signal(self.sigma_width)
        wait = Signal(range(self.rad_latency + 1))

        # ---- normalise: N0 channel index; N1 x, |Γ|; D·x; N2 c = D·x − S1; N3 |c|, sign; |c|·|Γ|
        # (registered DSP); divider by σ; R1 rem ≠ 0; R2 floor; R3 >> (K − P), + B; R4 − Y_prev,
        # output + Y store. N0 keeps the incrementer of jn out of the buffer/ROM read paths (ABC
        # otherwise reuses the jn + 1 carry chain outputs inside the Γ ROM logic).
        jn = Signal(range(D + 1))
        issue = Signal()
        n0_v, n1_v = Signal(), Signal()
        n0_j = Signal(jw, reset_less=True)
        n1_j = Signal(jw)
        n1_x = Signal(signed(xw))
        n1_g = Signal(gw + 1)
        m.d.comb += [xbr.addr.eq(n0_j), gr.addr.eq(n0_j)]
        m.d.sync += [n0_v.eq(issue), n0_j.eq(jn[:jw]),
                     n1_v.eq(n0_v), n1_j.eq(n0_j), n1_x.eq(xbr.data), n1_g.eq(gr.data)]
        with m.If(issue):
            m.d.sync += jn.eq(jn + 1)
        lc = const_mul_latency(D)
        dx = const_mul(m, n1_x, D, "dx")
        dx_v, dx_j, dx_g = delay(m, n1_v, lc, "dxv"), delay(m, n1_j, lc, "dxj"), \
            delay(m, n1_g, lc, "dxg")
        n2_v, n3_v = Signal(), Signal()
        n2_j, n3_j = Signal(jw), Signal(jw)
        n2_g = Signal(gw + 1)
        n3_ga = Signal(gw)
        n2_c = Signal(signed(self.c_width))
        n3_c = Signal(self.c_width)
        n3_neg = Signal()
        m.d.sync += [
            n2_v.eq(dx_v), n2_j.eq(dx_j), n2_g.eq(dx_g), n2_c.eq(dx - s1),
            n3_v.eq(n2_v), n3_j.eq(n2_j), n3_ga.eq(n2_g[:gw]), n3_neg.eq((n2_c < 0) ^ n2_g[gw]),
            n3_c.eq(Mux(n2_c < 0, -n2_c, n2_c)),
        ]
        lm = registered_mul_latency(self.c_width, gw)
        prod = registered_mul(m, n3_c, n3_ga, "cg", self.dsp_target)
        p_v, p_j, p_neg = delay(m, n3_v, lm, "pv"), delay(m, n3_j, lm, "pj"), \
            delay(m, n3_neg, lm, "pn")
        m.submodules.div = div = PipelinedDivider(self.mag_width, self.sigma_width,
                                                  self.quo_width, jw + 1)
        m.d.comb += [div.i_valid.eq(p_v), div.i_num.eq(prod), div.i_den.eq(sigma),
                     div.i_tag.eq(Cat(p_j, p_neg))]
        r1_v, r2_v, r3_v = Signal(), Signal(), Signal()
        r1_j, r2_j, r3_j = Signal(jw), Signal(jw), Signal(jw)
        r1_neg, r1_nz = Signal(), Signal()
        r1_quo = Signal(signed(self.quo_width + 1))
        r2_q = Signal(signed(self.quo_width + 1))
        r2_b = Signal(signed(self.beta_width))
        r3_y, r3_yp = Signal(signed(yw)), Signal(signed(yw))
        m.d.comb += [br.addr.eq(r1_j), ybr.addr.eq(r2_j)]
        m.d.sync += [
            r1_v.eq(div.o_valid), r1_j.eq(div.o_tag[:jw]), r1_neg.eq(div.o_tag[jw]),
            r1_nz.eq(div.o_rem != 0), r1_quo.eq(div.o_quo),
            r2_v.eq(r1_v), r2_j.eq(r1_j), r2_b.eq(br.data),
            r2_q.eq(Mux(r1_neg, ~r1_quo, r1_quo) + (r1_neg & ~r1_nz)),
            r3_v.eq(r2_v), r3_j.eq(r2_j), r3_y.eq((r2_q >> (K - P)) + r2_b), r3_yp.eq(ybr.data),
        ]
        yaddr = Signal(range(depth))
        r3_last = r3_j == D - 1
        m.d.sync += [q.w_valid.eq(r3_v), q.w_data.data.eq(r3_y - r3_yp), q.w_data.skip.eq(0),
                     q.w_data.last.eq(r3_last)]
        with m.If(r3_v):
            m.d.comb += [ymem.w_addr.eq(yaddr), ymem.w_data.eq(r3_y), ymem.w_en.eq(1)]
            m.d.sync += yaddr.eq(yaddr + 1)

        def end_of_row():
            next_row(m, row, first, self.rows)

        clr = Signal(range(depth + 1))
        with m.FSM(init="CLEAR"):
            with m.State("CLEAR"):  # after reset: zero the state RAMs, one word per cycle
                clear_rams_state(m, (xmem, ymem), clr, depth)
            with m.State("LOAD"):
                load_row_state(m, self.i_stream.ready, accept, pos, col, base, depth, D)
            with m.State("DRAIN"):  # until the row's X are stored and S1, S2 complete
                with m.If(s_done):
                    with m.If(changed | first):
                        m.d.sync += wait.eq(self.rad_latency - 1)
                        m.next = "RAD"
                    with m.Else():
                        m.next = "SKIP"
            with m.State("SKIP"):
                with m.If(q.room):
                    m.d.comb += q.issue.eq(1)
                    m.d.sync += [q.w_valid.eq(1), q.w_data.skip.eq(1), q.w_data.last.eq(1),
                                 q.w_data.data.eq(0)]
                    end_of_row()
                    m.next = "LOAD"
            with m.State("RAD"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "SQRT"
            with m.State("SQRT"):
                m.d.comb += [sqr.start.eq(1), sqr.value.eq(rad)]
                m.next = "SQRT_WAIT"
            with m.State("SQRT_WAIT"):
                with m.If(sqr.done):
                    m.d.sync += [sigma.eq(sqr.root), jn.eq(0), yaddr.eq(base)]
                    m.next = "NORM"
            with m.State("NORM"):
                m.d.comb += [issue.eq((jn < D) & q.room), q.issue.eq(issue)]
                with m.If(r3_v & r3_last):
                    end_of_row()
                    m.next = "LOAD"
        return m


def _synth_layernorm(params: dict) -> LayerNormUnit:
    """Synthesis factory: LN1 of block 0 of a random model (17 tokens, dim from the parameters)."""
    from ..model.factory import random_vit

    art = random_vit(0, dim=int(params.get("dim", 64)), heads=4, depth=1, levels=16)
    ecp5 = params.get("family") == "ecp5"
    # ECP5: DP16KD with its output register (see SplitRAM) and fully registered MULT18X18D
    # (see RegisteredMul); elsewhere inferred RAM and multipliers with the same cycle behaviour
    return LayerNormUnit.from_artifact(art, "blocks.0.ln1", ram_primitives=ecp5,
                                       dsp_target="ecp5" if ecp5 else None)


SYNTH_BLOCKS = {"layernorm": (_synth_layernorm, {"dim": 64}, [{"dim": 32}, {"dim": 64}])}
