"""Row-serial integer LayerNorm and softmax units with per-row run-time parameters (SPEC §5).

Both units compute one operator row by row, bit-exact with the one definition in
:mod:`equispike.model.intops` (:func:`~equispike.model.intops.int_layernorm`,
:func:`~equispike.model.intops.int_softmax`). Unlike the differential units
(:mod:`~equispike.rtl.layernorm_unit`, :mod:`~equispike.rtl.softmax_unit`) they keep no running
sums and no per-model ROMs: a programmable core streams a row in, with the operator's per-row
parameters (``Γ``, ``B`` and ``E`` for LayerNorm, ``C`` for softmax) on the same beats, and takes
the row's outputs back in input order.

Stream contract (Amaranth RFC 61): input beats are taken only with ``i_stream.ready``; the output
beats come from a FIFO's output register (``o_stream.valid`` stays high, payload stable, until
``ready``). A row ends with the beat whose ``last`` is set; the first beat of a row carries its
scalar parameter (``e`` / ``c``). Consecutive rows overlap: each unit is a chain of stages (its
passes over a row), each working on its own row; a stage hands its row on, with the row's
parameters in the next stage's registers, when the next stage is free. A stage writes its row
into a row buffer behind the next stage's reads of the previous row (the LayerNorm buffer holds
two rows, one half each: its square root stage sits between the writer and the reader). The
results leave in input order. Back-to-back rows of one length are accepted
:meth:`RowLayerNorm.row_interval` / :meth:`RowSoftmax.row_interval` cycles apart: the slowest
stage, not the sum of the passes.

Every register-to-register path holds at most one carry chain, one multiplier (18 × 18 limbs of
:func:`~equispike.rtl._dsp.registered_mul`) or a few LUT levels; the divisions are
:class:`~equispike.rtl._arith.PipelinedDivider` stages and the square root
:class:`~equispike.rtl._arith.SequentialIsqrt` (no ``//`` or ``%`` in the RTL).
"""

from __future__ import annotations

from math import isqrt

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.intops import LayerNormParams, exp2_lut
from ..model.widths import layernorm_output_bound, signed_bits
from ._arith import PipelinedDivider, SequentialIsqrt, check_int, delay
from ._dsp import check_dsp_target, registered_mul, registered_mul_latency
from .softmax_unit import OUT_QUEUE_DEPTH, OUT_QUEUE_LATENCY, _OutQueue

__all__ = ["RowLayerNorm", "RowSoftmax"]


# Row buffers in LUT RAM (ECP5 DPR16X4): Yosys otherwise maps a wide one onto a DP16KD read
# without its output register, 5.6 ns clock-to-out in nextpnr's ECP5 model
_LUT_RAM = {"ram_style": "distributed"}


def _abs(v):
    return Mux(v < 0, -v, v)


class RowLayerNorm(wiring.Component):
    """Integer LayerNorm row by row (a row in each of three stages), ``Γ``, ``B``, ``E`` per row.

    For a row ``x`` of ``D`` beats (``1 <= D <= max_dim``) the output beats are
    ``y == int_layernorm(x, Γ, B, LayerNormParams(E, K, P))``, in input order:
    ``S1 = Σx``, ``S2 = Σx²``, ``σ = isqrt(D·S2 − S1² + E)``, ``c_i = D·x_i − S1``,
    ``y_i = ((c_i·Γ_i) // σ) >> (K − P) + B_i`` (floor division, arithmetic shift).

    Stages, each on its own row: (1) front: load, one beat per cycle: ``(x, Γ, B)`` into one half
    of a ``2·max_dim``-entry row buffer, ``S1`` accumulated, ``|x|²`` by a registered multiplier
    into ``S2``; then the radicand from the front's held sums: ``D·S2`` and ``S1²`` (registered
    multipliers), ``+ E``, ``− S1²``; (2) middle: ``σ`` by
    :class:`~equispike.rtl._arith.SequentialIsqrt` (one root bit per cycle); (3) normalise, one
    element per cycle from the row's half: ``D·|x|``, sign, ``− S1``, ``|c|·|Γ|`` (registered
    multiplier), the pipelined divider by ``σ`` on the magnitude, corrected to floor
    (``−(q + (r ≠ 0))`` for a negative product), ``>> (K − P)``, ``+ B`` (B waits in a small
    delay RAM from the row buffer read to the end of the pipeline), into the credit-managed
    output FIFO. The front loads a row into the half of the row two back while the normalise
    pass still issues that one, one element behind it. The divider holds one ``σ``: a row's
    first element enters it after the previous row's last has left (:attr:`norm_gap`).

    Widths (worst case over every legal input: ``|x| <= 2^(x_width−1)``, ``D <= max_dim``,
    ``|Γ| <= 2^(gamma_width−1)``, ``E < 2^e_width``):

    * ``S1``: ``signed_bits(max_dim·xmin, max_dim·xmax)``; ``S2``: bits of ``max_dim·xmin²``;
    * radicand and ``D·S2 + E``: bits of ``max_dim²·xmin² + Emax`` (``D·S2 − S1² <= D·S2``);
      ``σ``: bits of its floor square root;
    * ``c``: ``|c| <= max_dim·(xmax − xmin)``; ``|c·Γ|``: bits of that times ``2^(gamma_width−1)``;
    * quotient: ``|c·Γ|/σ < 2·(isqrt(max_dim − 1) + 1)·|Γ|max`` (the bound of
      :func:`~equispike.model.widths.layernorm_output_bound`);
    * ``y_width`` = ``signed_bits`` of ``±layernorm_output_bound(max_dim, 2^(gamma_width−1),
      2^(beta_width−1), (K, P))``.

    Latency and throughput (input valid every cycle, output always ready): ``row_cycles(D) = 2·D
    + Ll + Lr + Ls + Ln + 4`` cycles from a row's first input beat to its last output beat when
    it enters an idle unit, with ``Ll = 2 + Lm(|x|²)`` (:attr:`load_latency`), ``Lr = 2 +
    max(Lm(S1²), Lm(D·S2))`` (:attr:`rad_latency`), ``Ls = ceil(Wr/2) + 1`` (:attr:`sqrt_cycles`,
    square root of the ``Wr``-bit radicand), ``Ln`` = :attr:`norm_latency` and ``Lm(·)`` the
    :func:`~equispike.rtl._dsp.registered_mul_latency` of a product. Back-to-back rows of ``D``
    beats are accepted ``row_interval(D) = max(D + Ll + Lr + 1, D + Gn, Ls + 2)`` cycles apart
    (front, normalise pass with ``Gn`` = :attr:`norm_gap`, square root), the first ones sooner
    while the stages fill; a row then waits in the unit for the slower stages (its latency grows
    to a steady value above ``row_cycles``). :meth:`rows_in_flight` rows outstanding reach that
    interval. The input is not ready while the front waits for the square root or for the
    normalise pass to read the half it writes.

    Parameters
    ----------
    max_dim:
        Largest row length ``D`` (the row buffer holds two such rows), 1 to 4096.
    x_width, gamma_width, beta_width:
        Signed widths of ``x``, ``Γ``, ``B`` (2 to 40, 2 to 40, 1 to 40).
    e_width:
        Unsigned width of the eps term ``E`` (1 to 64); ``E >= 1`` is the caller's contract.
    K, P:
        Fixed-point parameters of :class:`~equispike.model.intops.LayerNormParams`
        (``0 <= P <= K <= 40``), fixed at generation.
    dsp_target:
        Target of the multipliers (:class:`~equispike.rtl._dsp.RegisteredMul`): ``None`` or
        ``"generic"`` (Amaranth registers and ``*``), ``"ecp5"`` (``MULT18X18D`` instances with
        their registers; simulate with ``sim/models/MULT18X18D.v``). Same cycle behaviour.

    Members
    -------
    i_stream:
        ``In(stream.Signature({x, gamma, beta, e, last}))``; ``e`` is sampled on a row's first beat.
    o_stream:
        ``Out(stream.Signature({y: signed(y_width), last}))``: ``D`` beats per row.

    A row longer than ``max_dim`` beats is a protocol error, asserted in simulation
    (``check_protocol``, on by default; Amaranth ``Assert``).
    """

    def __init__(self, max_dim: int, x_width: int, gamma_width: int, beta_width: int, e_width: int,
                 K: int = 16, P: int = 10, *, dsp_target: str | None = None):
        self.dsp_target = check_dsp_target("dsp_target", dsp_target)
        self.max_dim = check_int("max_dim", max_dim, 1, 4096)
        self.x_width = check_int("x_width", x_width, 2, 40)
        self.gamma_width = check_int("gamma_width", gamma_width, 2, 40)
        self.beta_width = check_int("beta_width", beta_width, 1, 40)
        self.e_width = check_int("e_width", e_width, 1, 64)
        self.K = check_int("K", K, 0, 40)
        self.P = check_int("P", P, 0, 40)
        if P > K:
            raise ValueError(f"P must be <= K, got K={K}, P={P}")
        N = self.max_dim
        xlo, xhi = -(1 << (x_width - 1)), (1 << (x_width - 1)) - 1
        gmax = 1 << (gamma_width - 1)
        emax = (1 << e_width) - 1
        self.d_width = N.bit_length()
        self.s1_width = signed_bits(N * xlo, N * xhi)
        self.s2_width = (N * xlo * xlo).bit_length()
        rad_max = N * N * xlo * xlo + emax
        self.rad_width = rad_max.bit_length()
        self.sigma_width = max(1, isqrt(rad_max).bit_length())
        cmax = N * (xhi - xlo)
        self.c_width = signed_bits(-cmax, cmax)
        self.dx_width = (N * -xlo).bit_length()             # D·|x|
        self.mag_width = max(1, (cmax * gmax).bit_length())  # |c·Γ|
        qmax = 2 * (isqrt(max(N - 1, 0)) + 1) * gmax
        self.quo_width = min(self.mag_width, qmax.bit_length())
        bound_params = LayerNormParams(E=1, K=K, P=P)
        self.ymax = layernorm_output_bound(N, gmax, 1 << (beta_width - 1), bound_params)
        self.y_width = signed_bits(-self.ymax, self.ymax)
        self.sqrt_cycles = (self.rad_width + 1) // 2 + 1
        #: Amaranth simulation: assert that no row is longer than ``max_dim`` (set to False
        #: for Verilog generation when the target flow has no use for the check)
        self.check_protocol = True
        self.in_layout = data.StructLayout({
            "x": signed(x_width), "gamma": signed(gamma_width), "beta": signed(beta_width),
            "e": unsigned(e_width), "last": 1})
        self.out_layout = data.StructLayout({"y": signed(self.y_width), "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    @property
    def load_latency(self) -> int:
        """Cycles from a row's last input beat to the cycle its ``S2`` completes."""
        return 2 + registered_mul_latency(self.x_width, self.x_width)

    @property
    def rad_latency(self) -> int:
        """Cycles from ``S1``/``S2`` complete to the radicand registered."""
        return 2 + max(registered_mul_latency(self.s1_width, self.s1_width),
                       registered_mul_latency(self.s2_width, self.d_width))

    @property
    def norm_latency(self) -> int:
        """Cycles from issuing an element in the normalise pass to its beat entering the FIFO."""
        return (6 + registered_mul_latency(self.x_width, self.d_width)
                + registered_mul_latency(self.c_width, self.gamma_width)
                + self.quo_width + 4)

    @property
    def norm_gap(self) -> int:
        """Fewest cycles from the last element of a row issued in the normalise pass to the next
        row's normalise start: the previous row's elements must be past the divider's input
        (``σ`` is one register for the whole divider) and have left its first stage."""
        pre = (6 + registered_mul_latency(self.x_width, self.d_width)
               + registered_mul_latency(self.c_width, self.gamma_width))
        return max(self.quo_width - 1, pre)

    def row_cycles(self, n: int) -> int:
        """Cycles from a row's first input beat to its last output beat at full rate."""
        check_int("n", n, 1, self.max_dim)
        return (2 * n + self.load_latency + self.rad_latency + self.sqrt_cycles
                + self.norm_latency + OUT_QUEUE_LATENCY + 2)

    def row_interval(self, n: int) -> int:
        """Cycles between the first input beats of consecutive rows of ``n`` beats at full rate."""
        check_int("n", n, 1, self.max_dim)
        ll, lr, ls = self.load_latency, self.rad_latency, self.sqrt_cycles
        return max(n + ll + lr + 1, n + self.norm_gap, ls + 2)

    def rows_in_flight(self, n: int) -> int:
        """Fewest rows of ``n`` beats a caller must keep outstanding (first beat handed in, last
        result not yet taken) for back-to-back rows to reach :meth:`row_interval`:
        ``ceil(row_cycles(n) / row_interval(n))``."""
        return -(-self.row_cycles(n) // self.row_interval(n))

    def elaborate(self, platform):
        m = Module()
        N, K, P = self.max_dim, self.K, self.P
        xw, gw, bw, yw, dw = self.x_width, self.gamma_width, self.beta_width, self.y_width, self.d_width
        jw = max(1, (N - 1).bit_length())
        ld = registered_mul_latency(xw, dw)
        lm = registered_mul_latency(self.c_width, gw)
        pre = 6 + ld + lm                    # issue to the divider's input
        gap = self.norm_gap

        # row buffer: two rows (address Cat(half, j), depth 2·max_dim; distributed RAM,
        # asynchronous read into a register), x, Γ, B in one word, written from the load
        # pipeline's first register stage, read when an element is issued
        m.submodules.rb = rb = memory.Memory(
            shape=data.StructLayout({"x": signed(xw), "g": signed(gw), "b": signed(bw)}),
            depth=2 * N, init=[], attrs=_LUT_RAM)
        rbw, rbr = rb.write_port(), rb.read_port(domain="comb")
        # B delay line: B leaves the row buffer with x and Γ and waits in a small distributed RAM
        # for the end of the pipeline (a fixed number of cycles: the pipeline never stalls), so
        # that a row's half is free once the row is issued
        lb = pre + self.quo_width - 1        # N1 to R1
        m.submodules.bd = bd = memory.Memory(shape=signed(bw), depth=1 << lb.bit_length(), init=[],
                                             attrs=_LUT_RAM)
        bdw, bdr = bd.write_port(), bd.read_port(domain="comb")
        bd_wp = Signal(lb.bit_length())
        bd_rp = Signal(lb.bit_length(), init=(-lb) % (1 << lb.bit_length()))
        m.d.sync += [bd_wp.eq(bd_wp + 1), bd_rp.eq(bd_rp + 1)]
        m.d.comb += [bdw.addr.eq(bd_wp), bdw.en.eq(1), bdr.addr.eq(bd_rp)]
        q = _OutQueue(m, self.o_stream, OUT_QUEUE_DEPTH(self.norm_latency))

        # ---- front: the load pass of one row into half f_h, S1 and S2; the radicand is computed
        # from the front's registers, which hold until the square root takes it
        ip = self.i_stream.payload
        accept = Signal()
        cnt = Signal(range(N + 1))          # beats of the row accepted so far
        n_d = Signal(range(N + 1))          # D of the row
        n_last = Signal(jw)                 # D − 1
        e_reg = Signal(self.e_width)
        f_h = Signal()                      # buffer half of the front's row
        m.d.comb += accept.eq(self.i_stream.valid & self.i_stream.ready)
        if self.check_protocol:
            with m.If(accept):
                m.d.comb += Assert(cnt < N, "RowLayerNorm: row longer than max_dim")

        # The front writes a row over the row two back (same half) while the normalise pass
        # still issues that one, behind it: an element is read the cycle after its issue, and
        # written at the earliest the cycle after its input beat. Half h is free once its row is
        # all issued (hdone[h]; cleared when the front hands a new row in h on), else up to the
        # elements issued so far (ahead)
        hdone = [Signal(init=1, name=f"hdone{h}") for h in range(2)]
        wr_ok = Signal()
        sq_go = Signal()                    # the square root takes the front's row this cycle
        n_go = Signal()                     # the normalise pass takes the middle's row

        # ---- load: A x, Γ, B registered and written; S1 += x, |x|; |x|² (registered
        # multiplier); S2 += |x|²
        a_v, a_first, a_last = Signal(), Signal(), Signal()
        a_x = Signal(signed(xw))
        a_g = Signal(signed(gw))
        a_b = Signal(signed(bw))
        a_e = Signal(self.e_width)
        a_addr = Signal(jw + 1)
        m.d.sync += [a_v.eq(accept), a_first.eq(cnt == 0), a_last.eq(ip.last), a_x.eq(ip.x),
                     a_g.eq(ip.gamma), a_b.eq(ip.beta), a_e.eq(ip.e), a_addr.eq(Cat(f_h, cnt[:jw]))]
        # the row's E, D and D − 1 from the A registers (the input handshake enables only cnt)
        with m.If(a_v & a_first):
            m.d.sync += e_reg.eq(a_e)
        with m.If(a_v & a_last):
            m.d.sync += [n_d.eq(a_addr[1:] + 1), n_last.eq(a_addr[1:])]
        m.d.comb += [rbw.addr.eq(a_addr), rbw.data.x.eq(a_x), rbw.data.g.eq(a_g),
                     rbw.data.b.eq(a_b), rbw.en.eq(a_v)]
        s1 = Signal(signed(self.s1_width))
        s2 = Signal(self.s2_width)
        b_v, b_first, b_last = Signal(), Signal(), Signal()
        b_abs = Signal(xw)
        with m.If(a_v):
            m.d.sync += s1.eq(Mux(a_first, a_x, s1 + a_x))
        m.d.sync += [b_v.eq(a_v), b_first.eq(a_first), b_last.eq(a_last), b_abs.eq(_abs(a_x))]
        lsq = registered_mul_latency(xw, xw)
        sq = registered_mul(m, b_abs, b_abs, "sq", self.dsp_target)
        sq_v, sq_first, sq_last = (delay(m, s, lsq, f"sq{k}") for k, s in
                                   (("v", b_v), ("f", b_first), ("l", b_last)))
        with m.If(sq_v):
            m.d.sync += s2.eq(Mux(sq_first, sq, s2 + sq))
        s_done = sq_v & sq_last   # S1 and S2 complete after this cycle

        # ---- radicand D·S2 + E − S1², free running on the front's held S1, S2, D, E
        s1a = Signal(self.s1_width)
        m.d.sync += s1a.eq(_abs(s1))
        s1sq = registered_mul(m, s1a, s1a, "s1sq", self.dsp_target)
        ds2 = registered_mul(m, s2, n_d, "ds2", self.dsp_target)
        ds2e = Signal(self.rad_width)
        rad = Signal(self.rad_width)
        m.d.sync += [ds2e.eq(ds2 + e_reg), rad.eq(ds2e - s1sq)]
        wait = Signal(range(self.rad_latency + 1))

        # ---- middle: σ of one row (the square root holds it until its next start) with the row's
        # S1, D, D − 1 and half, until the normalise pass takes them
        m.submodules.sqrt = sqr = SequentialIsqrt(self.rad_width)
        m_full, m_done, m_h = Signal(), Signal(), Signal()
        m_s1 = Signal(signed(self.s1_width))
        m_d = Signal(range(N + 1))
        m_last = Signal(jw)
        with m.If(sqr.done):
            m.d.sync += m_done.eq(1)

        # ---- normalise: N0 index; N1 x, Γ, B; N2 |x|, signs, |Γ|, B into its delay line; D·|x|;
        # N3 ±D·|x|; N4 c = D·x − S1; N5 |c|, sign of c·Γ; |c|·|Γ|; divider by σ; R1 rem ≠ 0, B
        # out of its delay line; R2 floor; R3 >> (K−P), + B. Every element carries its last flag,
        # so a row's tail needs none of the row registers k_*; these change only once the previous
        # row's elements are all past the divider's input (norm_gap)
        k_h = Signal()
        k_s1 = Signal(signed(self.s1_width))
        k_d = Signal(range(N + 1))
        k_last = Signal(jw)
        sigma_p = Signal(self.sigma_width)   # σ of the row being issued
        sigma = Signal(self.sigma_width)     # σ of the rows in the divider
        jn = Signal(range(N + 1))
        issue = Signal()
        n_first = Signal()                   # the next element issued is its row's first
        n0_v, n1_v, n2_v = Signal(), Signal(), Signal()
        n0_l, n1_l, n2_l = Signal(), Signal(), Signal()
        n0_a = Signal(jw + 1)
        n1_x = Signal(signed(xw))
        n1_g = Signal(signed(gw))
        n1_b = Signal(signed(bw))
        n2_xa = Signal(xw)
        n2_ga = Signal(gw)
        n2_xn, n2_gn = Signal(), Signal()
        m.d.comb += [rbr.addr.eq(n0_a), bdw.data.eq(n1_b)]
        m.d.sync += [n0_v.eq(issue), n0_a.eq(Cat(k_h, jn[:jw])), n0_l.eq(jn[:jw] == k_last),
                     n1_v.eq(n0_v), n1_l.eq(n0_l), n1_x.eq(rbr.data.x), n1_g.eq(rbr.data.g),
                     n1_b.eq(rbr.data.b),
                     n2_v.eq(n1_v), n2_l.eq(n1_l), n2_xa.eq(_abs(n1_x)), n2_ga.eq(_abs(n1_g)),
                     n2_xn.eq(n1_x < 0), n2_gn.eq(n1_g < 0)]
        # ``more``: elements left to issue, a register so that the issue decision in front of the
        # output FIFO's credit counter is one gate, not a compare carry chain
        more = Signal()
        with m.If(issue):
            m.d.sync += [jn.eq(jn + 1), more.eq(jn[:jw] != k_last), n_first.eq(0)]
        # cycles since the last issue, saturating at norm_gap − 1
        since = Signal(range(gap), init=gap - 1)
        with m.If(issue):
            m.d.sync += since.eq(0)
        with m.Elif(since != gap - 1):
            m.d.sync += since.eq(since + 1)
        # σ changes when the row's first element reaches the divider (the divider keeps no den
        # per stage): the previous row's last element has left it by then (norm_gap)
        sig_ld = delay(m, issue & n_first, pre - 1, "sig_ld")
        with m.If(sig_ld):
            m.d.sync += sigma.eq(sigma_p)
        dxa = registered_mul(m, n2_xa, k_d, "dx", self.dsp_target)
        dx_v, dx_l, dx_xn, dx_gn, dx_ga = (delay(m, s, ld, f"dx{k}") for k, s in
                                           (("v", n2_v), ("l", n2_l), ("xn", n2_xn),
                                            ("gn", n2_gn), ("ga", n2_ga)))
        n3_v, n4_v, n5_v = Signal(), Signal(), Signal()
        n3_l, n4_l, n5_l = Signal(), Signal(), Signal()
        n3_gn, n4_gn, n5_neg = Signal(), Signal(), Signal()
        n3_ga, n4_ga, n5_ga = Signal(gw), Signal(gw), Signal(gw)
        n3_dx = Signal(signed(self.dx_width + 1))
        n4_c = Signal(signed(self.c_width))
        n5_c = Signal(self.c_width)
        m.d.sync += [
            n3_v.eq(dx_v), n3_l.eq(dx_l), n3_gn.eq(dx_gn), n3_ga.eq(dx_ga),
            n3_dx.eq(Mux(dx_xn, -dxa[:self.dx_width], dxa[:self.dx_width])),
            n4_v.eq(n3_v), n4_l.eq(n3_l), n4_gn.eq(n3_gn), n4_ga.eq(n3_ga), n4_c.eq(n3_dx - k_s1),
            n5_v.eq(n4_v), n5_l.eq(n4_l), n5_ga.eq(n4_ga), n5_neg.eq((n4_c < 0) ^ n4_gn),
            n5_c.eq(_abs(n4_c)),
        ]
        prod = registered_mul(m, n5_c, n5_ga, "cg", self.dsp_target)
        p_v, p_l, p_neg = (delay(m, s, lm, f"p{k}") for k, s in
                           (("v", n5_v), ("l", n5_l), ("n", n5_neg)))
        m.submodules.div = div = PipelinedDivider(self.mag_width, self.sigma_width,
                                                  self.quo_width, 2)
        m.d.comb += [div.i_valid.eq(p_v), div.i_num.eq(prod[:self.mag_width]), div.i_den.eq(sigma),
                     div.i_tag.eq(Cat(p_l, p_neg))]
        r1_v, r2_v, r3_v = Signal(), Signal(), Signal()
        r1_l, r2_l, r3_l = Signal(), Signal(), Signal()
        r1_neg, r1_nz = Signal(), Signal()
        r1_quo = Signal(signed(self.quo_width + 1))
        r2_q = Signal(signed(self.quo_width + 1))
        r2_b = Signal(signed(bw))
        r3_y = Signal(signed(yw))
        m.d.sync += [
            r1_v.eq(div.o_valid), r1_l.eq(div.o_tag[0]), r1_neg.eq(div.o_tag[1]),
            r1_nz.eq(div.o_rem != 0), r1_quo.eq(div.o_quo),
            # floor of a negative quotient: −(q + (r ≠ 0)) = ~q + (r == 0)
            r2_v.eq(r1_v), r2_l.eq(r1_l), r2_b.eq(bdr.data),
            r2_q.eq(Mux(r1_neg, ~r1_quo, r1_quo) + (r1_neg & ~r1_nz)),
            r3_v.eq(r2_v), r3_l.eq(r2_l), r3_y.eq((r2_q >> (K - P)) + r2_b),
        ]
        m.d.sync += [q.w_valid.eq(r3_v), q.w_data.y.eq(r3_y), q.w_data.last.eq(r3_l)]
        m.d.comb += [issue.eq(more & q.room), q.issue.eq(issue)]

        # the reads free the half they read. ahead: jn > cnt, from the comparisons of the previous
        # cycle's jn and cnt (registers) and that cycle's increments (a_v, n0_v) and jn reset, so
        # that i_stream.ready is a few gates after registers, not a compare carry chain (a cnt
        # reset at a row's last beat is seen one cycle late, while the front is not loading)
        dif = Signal(signed(jw + 3))
        g_ge0, g_gt0, g_gt1, go_r = Signal(), Signal(), Signal(), Signal()
        m.d.comb += dif.eq(jn - cnt)
        # sign and zero tests of the one subtraction (no second carry chain)
        m.d.sync += [g_ge0.eq(~dif[-1]), g_gt0.eq(~dif[-1] & dif.any()),
                     g_gt1.eq(~dif[-1] & dif[1:].any()), go_r.eq(n_go)]
        ahead = ~go_r & Mux(a_v, Mux(n0_v, g_gt0, g_gt1), Mux(n0_v, g_ge0, g_gt0))
        m.d.comb += wr_ok.eq(Mux(f_h, hdone[1], hdone[0]) | ((k_h == f_h) & ahead))
        with m.If(issue & (jn[:jw] == k_last)):
            for h in range(2):
                with m.If(k_h == h):
                    m.d.sync += hdone[h].eq(1)

        # the normalise pass takes the middle's row once the previous row is issued and past the
        # divider's input
        m.d.comb += n_go.eq(m_done & ~more & (since == gap - 1))
        with m.If(n_go):
            m.d.sync += [k_h.eq(m_h), k_s1.eq(m_s1), k_d.eq(m_d), k_last.eq(m_last),
                         sigma_p.eq(sqr.root), jn.eq(0), more.eq(1), n_first.eq(1),
                         m_full.eq(0), m_done.eq(0)]

        m.d.comb += sq_go.eq(0)
        with m.FSM(init="LOAD"):
            with m.State("LOAD"):       # until the cycle after the row's last beat
                m.d.comb += self.i_stream.ready.eq(wr_ok & ~(a_v & a_last))
                with m.If(accept):
                    m.d.sync += cnt.eq(Mux(ip.last, 0, cnt + 1))
                with m.If(a_v & a_last):
                    m.next = "DRAIN"
            with m.State("DRAIN"):       # until S1 and S2 are complete
                with m.If(s_done):
                    m.d.sync += wait.eq(self.rad_latency - 1)
                    m.next = "RAD"
            with m.State("RAD"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "SQRT"
            with m.State("SQRT"):        # the square root takes the row once the middle is free
                m.d.comb += [sq_go.eq(~sqr.busy & ~m_full), sqr.start.eq(sq_go),
                             sqr.value.eq(rad)]
                with m.If(sq_go):
                    m.d.sync += [m_full.eq(1), m_s1.eq(s1), m_d.eq(n_d), m_last.eq(n_last),
                                 m_h.eq(f_h), f_h.eq(~f_h)]
                    for h in range(2):
                        with m.If(f_h == h):
                            m.d.sync += hdone[h].eq(0)
                    m.next = "LOAD"
        return m


class RowSoftmax(wiring.Component):
    """Integer softmax row by row (a row in each of its three passes), ``C`` given per row.

    For a row ``z`` of ``n`` beats (``1 <= n <= max_n``) the output beats are
    ``p == int_softmax(z, SoftmaxParams(C, G, H, F, P))``, in input order:
    ``d_j = max(z) − z_j``, ``t_j = (d_j·C) >> H``, ``e_j = LUT[t_j mod 2^G] >> min(t_j >> G, F + 1)``
    with ``LUT = exp2_lut(G, F)`` (a ROM), ``p_j = floor(e_j·2^P / Σe)``.

    Passes, each on its own row: (1) load, one beat per cycle: ``z`` into a ``max_n``-entry row
    buffer, running maximum; (2) exponent, one element per cycle: ``d = max − z``, ``d·C``
    (registered multiplier), ``t`` split into LUT index and shift, LUT read, shift, ``e`` into a
    second row buffer and ``Σe``; (3) divide, one element per cycle: ``e·2^P`` by ``Σe`` in the
    pipelined divider, into the credit-managed output FIFO. The quotient is at most ``2^P``
    (``e <= Σe``): ``P + 1`` bits. Each pass writes its row into its buffer behind the next
    pass's reads of the previous row (element ``j`` once the reader has issued its element
    ``j``), so one row per buffer suffices; the exponent pass starts a row once the previous
    row's elements are past its second stage; the divider holds one ``Σe``: a row's first
    element enters it after the previous row's last has left (:attr:`div_gap`).

    Widths: ``d`` unsigned ``z_width + 1`` bits, ``d·C`` ``z_width + 1 + c_width`` bits, ``t`` that
    minus ``H``, ``e`` ``F + 1`` bits (``LUT[0] = 2^F``), ``Σe`` the bits of ``max_n·2^F``.

    Latency and throughput (input valid every cycle, output always ready): ``row_cycles(n) = 3·n
    + Le + Ld + 5`` cycles from a row's first input beat to its last output beat when it enters an
    idle unit, ``Le`` = :attr:`exp_latency`, ``Ld`` = :attr:`div_latency`. Back-to-back rows of
    ``n`` beats are accepted ``row_interval(n) = n + max(Gd, Le + 2)`` cycles apart (divide pass
    with ``Gd`` = :attr:`div_gap`; exponent pass, which issues a row's elements behind the divide
    pass's reads of the previous row and hands on ``Σe`` after its last), the first ones sooner
    while the passes fill; a row then waits in the unit for the slower passes (its latency grows
    to a steady value above ``row_cycles``). :meth:`rows_in_flight` rows outstanding reach that
    interval. The input is not ready while the load pass holds a complete row the exponent pass
    has not taken, or has caught up with the exponent pass's reads.

    Parameters
    ----------
    max_n:
        Largest row length ``n`` (row buffer depth), 1 to 4096.
    z_width:
        Signed width of the scores ``z`` (2 to 40).
    c_width:
        Unsigned width of the constant ``C`` (1 to 40).
    G, H, F, P:
        Fixed-point parameters of :class:`~equispike.model.intops.SoftmaxParams` (ranges as there:
        ``G`` 0–12, ``H`` 0–40, ``F`` 1–30, ``P`` 1–30), fixed at generation.
    dsp_target:
        Target of the multipliers (:class:`~equispike.rtl._dsp.RegisteredMul`): ``None`` or
        ``"generic"`` (Amaranth registers and ``*``), ``"ecp5"`` (``MULT18X18D`` instances with
        their registers; simulate with ``sim/models/MULT18X18D.v``). Same cycle behaviour.

    Members
    -------
    i_stream:
        ``In(stream.Signature({z, c, last}))``; ``c`` is sampled on a row's first beat.
    o_stream:
        ``Out(stream.Signature({p: unsigned(P + 1), last}))``: ``n`` beats per row.

    A row longer than ``max_n`` beats is a protocol error, asserted in simulation
    (``check_protocol``).
    """

    def __init__(self, max_n: int, z_width: int, c_width: int, G: int = 6, H: int = 16, F: int = 15,
                 P: int = 12, *, dsp_target: str | None = None):
        self.dsp_target = check_dsp_target("dsp_target", dsp_target)
        self.max_n = check_int("max_n", max_n, 1, 4096)
        self.z_width = check_int("z_width", z_width, 2, 40)
        self.c_width = check_int("c_width", c_width, 1, 40)
        self.G = check_int("G", G, 0, 12)
        self.H = check_int("H", H, 0, 40)
        self.F = check_int("F", F, 1, 30)
        self.P = check_int("P", P, 1, 30)
        self.d_width = z_width + 1
        self.prod_width = self.d_width + c_width
        self.t_width = max(1, self.prod_width - H)
        self.sum_width = (self.max_n << F).bit_length()
        self.lut = [int(v) for v in exp2_lut(G, F)]
        #: Amaranth simulation: assert that no row is longer than ``max_n``
        self.check_protocol = True
        self.in_layout = data.StructLayout({"z": signed(z_width), "c": unsigned(c_width), "last": 1})
        self.out_layout = data.StructLayout({"p": unsigned(P + 1), "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.in_layout)),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    @property
    def exp_latency(self) -> int:
        """Cycles from an element leaving the row buffer to its ``e`` entering ``Σe``."""
        return 6 + registered_mul_latency(self.d_width, self.c_width)

    @property
    def div_gap(self) -> int:
        """Fewest cycles from the last element of a row issued in the divide pass to the next
        row's divide start: ``P`` (the divider's ``P + 1`` stages share one ``Σe`` register, so a
        row's first element enters them after the previous row's last has left)."""
        return self.P

    @property
    def div_latency(self) -> int:
        """Cycles from issuing an element to the divider to its beat entering the FIFO."""
        return self.P + 4

    def row_cycles(self, n: int) -> int:
        """Cycles from a row's first input beat to its last output beat at full rate."""
        check_int("n", n, 1, self.max_n)
        return 3 * n + self.exp_latency + self.div_latency + OUT_QUEUE_LATENCY + 3

    def row_interval(self, n: int) -> int:
        """Cycles between the first input beats of consecutive rows of ``n`` beats at full rate."""
        check_int("n", n, 1, self.max_n)
        return n + max(self.div_gap, self.exp_latency + 2)

    def rows_in_flight(self, n: int) -> int:
        """Fewest rows of ``n`` beats a caller must keep outstanding (first beat handed in, last
        result not yet taken) for back-to-back rows to reach :meth:`row_interval`:
        ``ceil(row_cycles(n) / row_interval(n))``."""
        return -(-self.row_cycles(n) // self.row_interval(n))

    def elaborate(self, platform):
        m = Module()
        N, G, H, F, P = self.max_n, self.G, self.H, self.F, self.P
        zw = self.z_width
        jw = max(1, (N - 1).bit_length())
        shb = (F + 1).bit_length()

        # row buffers (distributed RAM, one row each, asynchronous read into a register): each
        # pass writes its row behind the next pass's reads of the previous row
        m.submodules.zbuf = zbuf = memory.Memory(shape=signed(zw), depth=N, init=[], attrs=_LUT_RAM)
        m.submodules.ebuf = ebuf = memory.Memory(shape=unsigned(F + 1), depth=N, init=[],
                                                 attrs=_LUT_RAM)
        m.submodules.lut = lut = memory.Memory(shape=unsigned(F + 1), depth=1 << G, init=self.lut)
        zbw, zbr = zbuf.write_port(), zbuf.read_port(domain="comb")
        ebw, ebr = ebuf.write_port(), ebuf.read_port(domain="comb")
        lutr = lut.read_port(domain="comb")
        q = _OutQueue(m, self.o_stream, OUT_QUEUE_DEPTH(self.div_latency))

        # ---- load pass: z into the row buffer, running maximum; the maximum, C and n − 1 hold
        # until the exponent pass takes the row
        ip = self.i_stream.payload
        accept = Signal()
        cnt = Signal(range(N + 1))
        n_last = Signal(jw)                 # n − 1
        c_reg = Signal(self.c_width)
        f_done = Signal()                   # the row's maximum is complete
        m.d.comb += accept.eq(self.i_stream.valid & self.i_stream.ready)
        if self.check_protocol:
            with m.If(accept):
                m.d.comb += Assert(cnt < N, "RowSoftmax: row longer than max_n")

        # ---- load: A z registered and written; running maximum (one compare, its sign picks)
        a_v, a_first, a_last = Signal(), Signal(), Signal()
        a_z = Signal(signed(zw))
        a_c = Signal(self.c_width)
        a_j = Signal(jw)
        zmax = Signal(signed(zw))
        vdiff = Signal(signed(zw + 1))
        m.d.sync += [a_v.eq(accept), a_first.eq(cnt == 0), a_last.eq(ip.last), a_z.eq(ip.z),
                     a_c.eq(ip.c), a_j.eq(cnt[:jw])]
        # the row's C and n − 1 from the A registers (the input handshake enables only cnt)
        with m.If(a_v & a_first):
            m.d.sync += c_reg.eq(a_c)
        with m.If(a_v & a_last):
            m.d.sync += [n_last.eq(a_j), f_done.eq(1)]
        m.d.comb += [zbw.addr.eq(a_j), zbw.data.eq(a_z), zbw.en.eq(a_v), vdiff.eq(zmax - a_z)]
        with m.If(a_v):
            m.d.sync += zmax.eq(Mux(a_first | vdiff[-1], a_z, zmax))

        # ---- exponent pass: E0 index; E1 z; E2 d = max − z; d·C (registered multiplier); E3 t
        # split; E4 LUT; E5 shift, Σe; e stored. Each element carries its index and last flag, so a
        # row's tail shares the pipeline with the next row's head; the row registers x_* change
        # once the previous row's elements are past E2. x_h, k_h: the parity of the rows in the
        # exponent and the divide pass
        x_more, x_h = Signal(), Signal(init=1)
        x_max = Signal(signed(zw))
        x_c = Signal(self.c_width)
        x_last = Signal(jw)
        j0 = Signal(range(N + 1))
        exp_issue = Signal()
        e0_v, e1_v, e2_v = Signal(), Signal(), Signal()
        e0_j, e1_j, e2_j = Signal(jw), Signal(jw), Signal(jw)
        e0_l, e1_l, e2_l = Signal(), Signal(), Signal()
        e1_z = Signal(signed(zw))
        e2_d = Signal(self.d_width)
        m.d.comb += zbr.addr.eq(e0_j)
        m.d.sync += [e0_v.eq(exp_issue), e0_j.eq(j0[:jw]), e0_l.eq(j0[:jw] == x_last),
                     e1_v.eq(e0_v), e1_j.eq(e0_j), e1_l.eq(e0_l), e1_z.eq(zbr.data),
                     e2_v.eq(e1_v), e2_j.eq(e1_j), e2_l.eq(e1_l), e2_d.eq(x_max - e1_z)]
        with m.If(exp_issue):
            m.d.sync += [j0.eq(j0 + 1), x_more.eq(j0[:jw] != x_last)]
        lat = registered_mul_latency(self.d_width, self.c_width)
        prod = registered_mul(m, e2_d, x_c, "dc", self.dsp_target)
        m_v, m_j, m_l = (delay(m, s, lat, f"m{k}") for k, s in (("v", e2_v), ("j", e2_j), ("l", e2_l)))
        # t zero-extended so that the LUT index and the shift exist for every G, H
        t = Signal(self.t_width + G + shb)
        m.d.comb += t.eq(prod[:self.prod_width] >> H)
        sh = t[G:]
        e3_v, e4_v, e5_v = Signal(), Signal(), Signal()
        e3_j, e4_j, e5_j = Signal(jw), Signal(jw), Signal(jw)
        e3_l, e4_l, e5_l = Signal(), Signal(), Signal()
        e5_f = Signal()                     # the row's first element
        e3_idx = Signal(max(1, G))
        e3_sh, e4_sh = Signal(shb), Signal(shb)
        e4_lut = Signal(F + 1)
        e5_e = Signal(F + 1)
        m.d.comb += lutr.addr.eq(e3_idx[:G] if G else 0)
        m.d.sync += [
            e3_v.eq(m_v), e3_j.eq(m_j), e3_l.eq(m_l), e3_idx.eq(t[:G] if G else 0),
            e3_sh.eq(Mux(sh > F, F + 1, sh[:shb])),
            e4_v.eq(e3_v), e4_j.eq(e3_j), e4_l.eq(e3_l), e4_sh.eq(e3_sh), e4_lut.eq(lutr.data),
            e5_v.eq(e4_v), e5_j.eq(e4_j), e5_l.eq(e4_l), e5_e.eq(e4_lut >> e4_sh),
            e5_f.eq(e4_j == 0),
        ]
        # Σe: complete after a row's last element; the divide pass takes it into ``den`` (two
        # cycles after its start at the earliest) before the next row's first element gets
        # here (that row's exponent pass issues behind the divide pass's reads)
        total = Signal(self.sum_width)
        d_pend = Signal()                   # a row's Σe waits for the divide pass
        d_last = Signal(jw)                 # its n − 1
        m.d.comb += [ebw.addr.eq(e5_j), ebw.data.eq(e5_e), ebw.en.eq(e5_v)]
        with m.If(e5_v):
            m.d.sync += total.eq(Mux(e5_f, e5_e, total + e5_e))
        with m.If(e5_v & e5_l):
            m.d.sync += [d_pend.eq(1), d_last.eq(e5_j)]

        # ---- divide pass: D0 index; D1 e; divider (e·2^P) / Σe; quotient into the FIFO. A row's
        # Σe goes into ``den`` when its first element reaches the divider
        k_h = Signal(init=1)
        k_last = Signal(jw)
        den = Signal(self.sum_width)
        jd = Signal(range(N + 1))
        issue = Signal()
        d_first = Signal()                  # the next element issued is its row's first
        d0_v, d1_v, d0_f = Signal(), Signal(), Signal()
        d0_j = Signal(jw)
        d0_l, d1_l = Signal(), Signal()
        d1_e = Signal(F + 1)
        m.d.comb += ebr.addr.eq(d0_j)
        m.d.sync += [d0_v.eq(issue), d0_j.eq(jd[:jw]), d0_l.eq(jd[:jw] == k_last),
                     d0_f.eq(issue & d_first),
                     d1_v.eq(d0_v), d1_l.eq(d0_l), d1_e.eq(ebr.data)]
        more = Signal()   # elements left to issue (a register: see RowLayerNorm)
        with m.If(issue):
            m.d.sync += [jd.eq(jd + 1), more.eq(jd[:jw] != k_last), d_first.eq(0)]
        # cycles since the last issue, saturating at div_gap − 1
        gap = self.div_gap
        since = Signal(range(gap), init=gap - 1)
        with m.If(issue):
            m.d.sync += since.eq(0)
        with m.Elif(since != gap - 1):
            m.d.sync += since.eq(since + 1)
        with m.If(d0_f):
            m.d.sync += [den.eq(total), d_pend.eq(0)]
        m.submodules.div = div = PipelinedDivider(F + 1 + P, self.sum_width, P + 1, 1)
        m.d.comb += [div.i_valid.eq(d1_v), div.i_num.eq(Cat(Const(0, P), d1_e)),
                     div.i_den.eq(den), div.i_tag.eq(d1_l)]
        m.d.sync += [q.w_valid.eq(div.o_valid), q.w_data.p.eq(div.o_quo),
                     q.w_data.last.eq(div.o_tag[0])]
        m.d.comb += [issue.eq(more & q.room), q.issue.eq(issue)]

        # the divide pass takes the next row once its Σe is complete and the previous row is
        # issued and has left the divider's first stage by the time this row reaches it
        d_go = Signal()
        m.d.comb += d_go.eq(d_pend & ~more & ~d_first & ~d0_f & (since == gap - 1))
        with m.If(d_go):
            m.d.sync += [k_h.eq(~k_h), k_last.eq(d_last), jd.eq(0), more.eq(1), d_first.eq(1)]

        # the exponent pass takes the load pass's row once the previous row is issued and past
        # E1. x_go is a register (it enables some sixty row registers): set when these hold in
        # the next cycle
        x_go = Signal()
        m.d.sync += x_go.eq(~x_go & (f_done | (a_v & a_last)) & ~x_more & ~e0_v)
        with m.If(x_go):
            m.d.sync += [x_more.eq(1), j0.eq(0), x_max.eq(zmax), x_c.eq(c_reg), x_last.eq(n_last),
                         x_h.eq(~x_h), f_done.eq(0)]

        def behind(lead, lead_inc, lead_rst, trail, trail_inc, trail_rst, name):
            """``lead > trail`` for two counters (registers that count up by their ``_inc`` and are
            reset to 0 by their ``_rst``, all three delayed one cycle here): the comparisons of
            the previous cycle's values, corrected by that cycle's increments and resets, so that
            the decision is a few gates after registers, not a compare carry chain."""
            dif = Signal(signed(jw + 3), name=f"{name}_dif")
            g_ge0, g_gt0, g_gt1 = (Signal(name=f"{name}_{k}") for k in ("ge0", "gt0", "gt1"))
            lp, li, lr, tp, ti, tr = (Signal(name=f"{name}_{k}") for k in
                                      ("lp", "li", "lr", "tp", "ti", "tr"))
            m.d.comb += dif.eq(lead - trail)
            # sign and zero tests of the one subtraction (no second carry chain)
            m.d.sync += [g_ge0.eq(~dif[-1]), g_gt0.eq(~dif[-1] & dif.any()),
                         g_gt1.eq(~dif[-1] & dif[1:].any()),
                         lp.eq(lead != 0), li.eq(lead_inc), lr.eq(lead_rst), ti.eq(trail_inc),
                         tr.eq(trail_rst)]
            lead_now = ~lr & (lp | li)              # lead > 0 in this cycle
            kept = Mux(li == ti, g_gt0, Mux(li, g_ge0, g_gt1))
            return ~lr & Mux(tr, lead_now, kept)

        # the exponent pass writes e of its row behind the divide pass's reads of the previous
        # row (an element is read the cycle after its issue; e is written several cycles after
        # the exponent pass issues it): it issues element j once the divide pass has issued the
        # previous row's element j, or all of it (that row is the divide pass's row when the
        # parities differ; when they match, the divide pass has not taken the previous row yet)
        e_ok = Signal()
        d_ahead = behind(jd, issue, d_go, j0, exp_issue, x_go, "ed")
        m.d.comb += [e_ok.eq((k_h != x_h) & (~more & ~d_first | d_ahead)),
                     exp_issue.eq(x_more & e_ok)]

        # the load pass writes z of its row behind the exponent pass's reads of the previous row
        # (the exponent pass's row while it issues, written the cycle after the beat)
        z_ok = Signal()
        x_ahead = behind(j0, exp_issue, x_go, cnt, accept, accept & ip.last, "zx")
        m.d.comb += z_ok.eq(~x_more | x_ahead)

        with m.FSM(init="LOAD"):
            with m.State("LOAD"):          # until the cycle after the row's last beat
                m.d.comb += self.i_stream.ready.eq(~(a_v & a_last) & z_ok)
                with m.If(accept):
                    m.d.sync += cnt.eq(Mux(ip.last, 0, cnt + 1))
                with m.If(a_v & a_last):
                    m.next = "FULL"
            with m.State("FULL"):          # until the exponent pass takes the row
                with m.If(x_go):
                    m.next = "LOAD"
        return m


def _synth_rowlayernorm(params: dict) -> RowLayerNorm:
    """Synthesis factory: ``RowLayerNorm`` for a core with 16-bit residuals (``MULT18X18D`` on ECP5)."""
    unit = RowLayerNorm(int(params.get("max_dim", 64)), int(params.get("x_width", 16)),
                        int(params.get("gamma_width", 18)), int(params.get("beta_width", 16)),
                        int(params.get("e_width", 20)),
                        dsp_target="ecp5" if params.get("family") == "ecp5" else None)
    unit.check_protocol = False
    return unit


def _synth_rowsoftmax(params: dict) -> RowSoftmax:
    """Synthesis factory: ``RowSoftmax`` with the default ``G, H, F, P`` (``MULT18X18D`` on ECP5)."""
    unit = RowSoftmax(int(params.get("max_n", 64)), int(params.get("z_width", 16)),
                      int(params.get("c_width", 24)),
                      dsp_target="ecp5" if params.get("family") == "ecp5" else None)
    unit.check_protocol = False
    return unit


SYNTH_BLOCKS = {
    "rowlayernorm": (_synth_rowlayernorm, {"max_dim": 64}, [{"max_dim": 64}]),
    "rowsoftmax": (_synth_rowsoftmax, {"max_n": 64}, [{"max_n": 64}]),
}
