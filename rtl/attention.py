"""Attention datapaths: SESA spike × spike products (SPEC §4) and SDSA-1/-3 (SPEC §8).

These are separate from the AW engine (``rtl/engine.py``); they reuse its idea (one event per
cycle, fetch a stored row, add it into lanes) with the stored matrices being running spike sums
(SESA) or the co-activation counts (SDSA-3).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.sdsa import SDSA_SATURATION, SDSA_THETA
from ..model.widths import signed_bits
from ._arith import check_int

__all__ = ["SpikeProductUnit", "SDSAUnit", "event_layout"]


def event_layout(index_width: int) -> data.StructLayout:
    """Spike event of :class:`SpikeProductUnit`: ``{b, row, col, sign, last}``."""
    return data.StructLayout({
        "b": 1,                        # 0: event of operand a, 1: event of operand b
        "row": unsigned(index_width),  # position in the operand, natural orientation
        "col": unsigned(index_width),
        "sign": signed(2),             # −1, +1; 0 is a no-op (an empty frame is one such beat)
        "last": 1,                     # last event of the frame (one head, one time step)
    })


class SpikeProductUnit(wiring.Component):
    """SESA: running product of two spiking operands, emitted as per-step deltas (SPEC §4).

    ``ΔP(t) = a(t)·op(B(t)) + A(t−1)·op(b(t))`` with ``op(B) = Bᵀ`` (``transpose_b``, Q·Kᵀ) or
    ``B`` (attn·V), exactly as :class:`equispike.model.sesa.SpikeProduct`, for ``heads`` heads.
    ``a`` is ``n × k``; ``b`` is ``m × k`` (transposed) or ``k × m``; ``ΔP`` is ``n × m``.

    Both terms come from events only: the running sums are stored per inner index ``κ`` as
    vectors, ``Aᵀ[κ]`` (``n`` lanes) and ``op(B)[κ]`` (``m`` lanes), in two RAMs of
    ``heads · k`` words. An ``a`` event ``(i, κ, s)`` adds ``s·op(B)[κ]`` into accumulator row ``i``
    and updates ``A[i, κ] += s``; a ``b`` event (``op(B)`` position ``(κ, j)``) adds ``s·Aᵀ[κ]``
    into accumulator column ``j`` and updates ``B``. The accumulator (``n × m`` lanes) is cleared as
    it is shifted out. After a reset the RAMs are zeroed (``heads · k + 1`` cycles, input not ready).

    Stream protocol
    ---------------
    ``i_stream`` (:func:`event_layout`): frames, one per (time step, head), heads in order
    ``0..heads−1`` then the next step. A frame lists **all ``b`` events first, then the ``a``
    events** (so that ``a`` events see ``B(t)`` and ``b`` events see ``A(t−1)``), in operand
    coordinates (``row``, ``col``), and ends with ``last = 1``; ``sign = 0`` beats are no-ops (an
    empty frame is one ``sign = 0, last = 1`` beat).
    ``o_stream`` (``{data: signed(acc_width), last}``): after each frame, the ``n · m`` entries of
    ``ΔP`` for that head, row-major (``last`` on the final one) — directly the input of
    :class:`~equispike.rtl.softmax_unit.SoftmaxUnit` for Q·Kᵀ.

    Latency and throughput: one event per cycle (``events + 1`` cycles per frame), then ``n · m``
    cycles to emit; ``events + n·m + 1`` cycles per frame at full output rate.

    Parameters
    ----------
    heads, n, k, m:
        Heads and operand sizes (``a``: ``n × k``; ``ΔP``: ``n × m``).
    transpose_b:
        True for Q·Kᵀ (``b`` is ``m × k``), False for attn·V (``b`` is ``k × m``).
    a_max, b_max:
        Largest magnitude of the running sums ``A`` and ``B`` (the sites' tracer bounds, width
        analysis ``<site>.tracer``). The output width follows: ``|ΔP| <= k·(a_max + b_max)``.
    """

    def __init__(self, heads: int, n: int, k: int, m: int, transpose_b: bool, a_max: int,
                 b_max: int):
        self.heads = check_int("heads", heads, 1, 256)
        self.n = check_int("n", n, 1, 1024)
        self.k = check_int("k", k, 1, 1024)
        self.m = check_int("m", m, 1, 1024)
        if not isinstance(transpose_b, bool):
            raise TypeError(f"transpose_b must be a bool, got {transpose_b!r}")
        self.transpose_b = transpose_b
        self.a_max = check_int("a_max", a_max, 1)
        self.b_max = check_int("b_max", b_max, 1)
        self.a_width = signed_bits(-a_max, a_max)
        self.b_width = signed_bits(-b_max, b_max)
        self.acc_bound = k * (a_max + b_max)
        self.acc_width = signed_bits(-self.acc_bound, self.acc_bound)
        self.index_width = max(1, (max(n, k, m) - 1).bit_length())
        super().__init__({
            "i_stream": In(stream.Signature(event_layout(self.index_width))),
            "o_stream": Out(stream.Signature(data.StructLayout({
                "data": signed(self.acc_width), "last": 1}))),
        })

    @classmethod
    def for_block(cls, art, block: int, which: str, report=None):
        """Q·Kᵀ (``which="qk"``) or attn·V (``"av"``) of block ``block``, bounds from the analysis."""
        from ..model.widths import analyze

        report = analyze(art) if report is None else report
        d, p = art.dims, f"blocks.{block}."
        N, dh = d.tokens, d.head_dim

        def tr(s):
            return report.bound(p + s + ".tracer")

        if which == "qk":
            return cls(d.heads, N, dh, N, True, tr("q"), tr("k"))
        if which == "av":
            return cls(d.heads, N, N, dh, False, tr("attn"), tr("v"))
        raise ValueError(f"which must be 'qk' or 'av', got {which!r}")

    def cycles_per_frame(self, events: int) -> int:
        return max(1, events) + self.n * self.m + 1

    def elaborate(self, platform):
        mod = Module()
        n, k, m, H = self.n, self.k, self.m, self.heads
        depth = H * k
        mod.submodules.amem = amem = memory.Memory(
            shape=data.ArrayLayout(signed(self.a_width), n), depth=depth, init=[])
        mod.submodules.bmem = bmem = memory.Memory(
            shape=data.ArrayLayout(signed(self.b_width), m), depth=depth, init=[])
        aw, bw = amem.write_port(), bmem.write_port()
        ar = amem.read_port(transparent_for=(aw,))
        br = bmem.read_port(transparent_for=(bw,))

        head = Signal(range(H))
        ev = self.i_stream.payload
        o = self.o_stream
        accept = Signal()
        kk = Mux(ev.b, ev.col if self.transpose_b else ev.row, ev.col)
        jj = ev.row if self.transpose_b else ev.col
        addr = Signal(range(depth))
        mod.d.comb += [
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            addr.eq(head * k + kk),
            ar.addr.eq(addr), br.addr.eq(addr),
        ]
        # stage 1
        s_v, s_b, s_last = Signal(), Signal(), Signal()
        s_i = Signal(range(n))
        s_j = Signal(range(m))
        s_sign = Signal(signed(2))
        s_addr = Signal(range(depth))
        mod.d.sync += [s_v.eq(accept & (ev.sign != 0)), s_b.eq(ev.b), s_i.eq(ev.row),
                       s_j.eq(jj), s_sign.eq(ev.sign), s_addr.eq(addr),
                       s_last.eq(accept & ev.last)]
        neg = s_sign < 0
        sa = [Signal(signed(self.a_width + 1), name=f"sa{r}") for r in range(n)]
        sb = [Signal(signed(self.b_width + 1), name=f"sb{c}") for c in range(m)]
        for r in range(n):
            mod.d.comb += sa[r].eq(Mux(neg, -ar.data[r], ar.data[r]))
        for c in range(m):
            mod.d.comb += sb[c].eq(Mux(neg, -br.data[c], br.data[c]))
        # running-sum updates (read-modify-write of one word)
        with mod.If(s_v & ~s_b):
            mod.d.comb += [aw.addr.eq(s_addr), aw.en.eq(1)]
            for r in range(n):
                mod.d.comb += aw.data[r].eq(ar.data[r] + Mux(s_i == r, s_sign, 0))
        with mod.If(s_v & s_b):
            mod.d.comb += [bw.addr.eq(s_addr), bw.en.eq(1)]
            for c in range(m):
                mod.d.comb += bw.data[c].eq(br.data[c] + Mux(s_j == c, s_sign, 0))

        acc = [Signal(signed(self.acc_width), name=f"acc{i}") for i in range(n * m)]
        cnt = Signal(range(n * m))
        clr = Signal(range(depth + 1))
        with mod.FSM(init="CLEAR"):
            with mod.State("CLEAR"):  # after reset: zero the running sums, one word per cycle
                mod.d.comb += [aw.addr.eq(clr), aw.en.eq(clr < depth),
                               bw.addr.eq(clr), bw.en.eq(clr < depth)]
                mod.d.sync += clr.eq(clr + 1)
                with mod.If(clr == depth):
                    mod.next = "IN"
            with mod.State("IN"):
                mod.d.comb += self.i_stream.ready.eq(~s_last)
                for r in range(n):
                    for c in range(m):
                        row_hit = s_v & ~s_b & (s_i == r)
                        col_hit = s_v & s_b & (s_j == c)
                        with mod.If(row_hit):
                            mod.d.sync += acc[r * m + c].eq(acc[r * m + c] + sb[c])
                        with mod.Elif(col_hit):
                            mod.d.sync += acc[r * m + c].eq(acc[r * m + c] + sa[r])
                with mod.If(s_last):
                    mod.d.sync += cnt.eq(0)
                    mod.next = "OUT"
            with mod.State("OUT"):
                mod.d.comb += [o.valid.eq(1), o.payload.data.eq(acc[0]),
                               o.payload.last.eq(cnt == n * m - 1)]
                with mod.If(o.ready):
                    for i in range(n * m):
                        mod.d.sync += acc[i].eq(acc[i + 1] if i + 1 < n * m else 0)
                    mod.d.sync += cnt.eq(cnt + 1)
                    with mod.If(cnt == n * m - 1):
                        mod.d.sync += head.eq(Mux(head == H - 1, 0, head + 1))
                        mod.next = "IN"
        return mod


class SDSAUnit(wiring.Component):
    """Spike-driven self-attention, SDSA-1 or SDSA-3 (SPEC §8), binary spikes, one time step per
    frame, bit-exact with :func:`equispike.model.sdsa.sdsa1` / :class:`~equispike.model.sdsa.SDSA3`.

    * ``mode=1``: ``out[n, d] = Q[n, d] AND OR_n'(K[n', d] AND V[n', d])``.
    * ``mode=3``: ``M = Kᵀ·V`` per head built from the token beats (``dim × head_dim`` counters
      saturating at 8: each token adds its ``v`` row into the rows of its active ``k`` channels),
      then for each token the ``q`` spikes are events: each adds row ``M[c]`` into ``dim``
      accumulator lanes (saturating at 8, exact because all terms are non-negative), and the sum
      ``x`` drives the attention LIF (θ = 4): ``h = (v + x) >> 1``, fire at ``h >= 4``, hard reset.
      The membrane ``v`` stays in ``[0, 3]`` (``h <= (3 + 8) >> 1 = 5``; ``h >= 4`` resets) so two
      bits per neuron, in a RAM of ``tokens`` words. It persists across steps; after a reset the RAM
      is zeroed (``tokens + 1`` cycles, input not ready).

    Stream protocol
    ---------------
    ``i_stream`` (``{q, k, v}``, ``dim`` bits each, bit ``c`` = channel ``c``): ``tokens`` beats per
    time step, token order. ``o_stream`` (``{s: dim bits, last}``): ``tokens`` beats per step
    (``last`` on the final token) with the output spikes, after the step's input is complete.

    Latency and throughput: ``tokens`` cycles to take a step in; then per token ``1`` cycle
    (mode 1: ``2·tokens`` per step) or ``popcount(q[n]) + 3`` cycles (mode 3: fetch the token's
    ``q``, one cycle per ``q`` event, one to see the event list empty, one for the LIF and the
    output beat): ``tokens + Σ_n (popcount(q[n]) + 3)`` cycles per step.
    """

    def __init__(self, mode: int, tokens: int, dim: int, heads: int = 1):
        if mode not in (1, 3):
            raise ValueError(f"mode must be 1 (SDSA-1) or 3 (SDSA-3), got {mode!r}")
        self.mode = mode
        self.tokens = check_int("tokens", tokens, 1, 1 << 16)
        self.dim = check_int("dim", dim, 1, 4096)
        self.heads = check_int("heads", heads, 1, dim)
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.head_dim = dim // heads
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout(
                {"q": unsigned(dim), "k": unsigned(dim), "v": unsigned(dim)}))),
            "o_stream": Out(stream.Signature(data.StructLayout({"s": unsigned(dim), "last": 1}))),
        })

    def cycles_per_step(self, q_spikes_per_token=None) -> int:
        """Cycles of one step at full rate (``q_spikes_per_token``: list, mode 3 only)."""
        if self.mode == 1:
            return 2 * self.tokens
        return self.tokens + sum(p + 3 for p in q_spikes_per_token)

    def elaborate(self, platform):
        mod = Module()
        N, D, dh = self.tokens, self.dim, self.head_dim
        SAT, TH = SDSA_SATURATION, SDSA_THETA
        i, o = self.i_stream, self.o_stream
        mod.submodules.qbuf = qbuf = memory.Memory(shape=unsigned(D), depth=N, init=[])
        qw, qr = qbuf.write_port(), qbuf.read_port(domain="comb")
        tok = Signal(range(N))
        accept = Signal()
        mod.d.comb += accept.eq(i.valid & i.ready)

        if self.mode == 1:
            kv = Signal(D)
            with mod.FSM():
                with mod.State("IN"):
                    mod.d.comb += i.ready.eq(1)
                    with mod.If(accept):
                        mod.d.comb += [qw.addr.eq(tok), qw.data.eq(i.payload.q), qw.en.eq(1)]
                        mod.d.sync += [kv.eq(kv | (i.payload.k & i.payload.v)),
                                       tok.eq(Mux(tok == N - 1, 0, tok + 1))]
                        with mod.If(tok == N - 1):
                            mod.next = "OUT"
                with mod.State("OUT"):
                    mod.d.comb += [qr.addr.eq(tok), o.valid.eq(1),
                                   o.payload.s.eq(qr.data & kv), o.payload.last.eq(tok == N - 1)]
                    with mod.If(o.ready):
                        mod.d.sync += tok.eq(Mux(tok == N - 1, 0, tok + 1))
                        with mod.If(tok == N - 1):
                            mod.d.sync += kv.eq(0)
                            mod.next = "IN"
            return mod

        cw = SAT.bit_length()  # counters 0..8
        M = [[Signal(cw, name=f"m{c1}_{c2}") for c2 in range(dh)] for c1 in range(D)]
        acc = [Signal(cw, name=f"x{c}") for c in range(D)]
        pend = Signal(D)
        onehot = Signal(D)
        mod.d.comb += onehot.eq(pend & (~pend + 1))
        mod.submodules.vmem = vmem = memory.Memory(
            shape=data.ArrayLayout(unsigned(2), D), depth=N, init=[])
        vw, vr = vmem.write_port(), vmem.read_port(domain="comb")

        def sat_add(a, b):
            s = a + b
            return Mux(s > SAT, SAT, s)

        clr = Signal(range(N + 1))
        with mod.FSM(init="CLEAR"):
            with mod.State("CLEAR"):  # after reset: zero the LIF membranes
                mod.d.comb += [vw.addr.eq(clr), vw.en.eq(clr < N)]
                mod.d.sync += clr.eq(clr + 1)
                with mod.If(clr == N):
                    mod.next = "IN"
            with mod.State("IN"):
                mod.d.comb += i.ready.eq(1)
                with mod.If(accept):
                    mod.d.comb += [qw.addr.eq(tok), qw.data.eq(i.payload.q), qw.en.eq(1)]
                    mod.d.sync += tok.eq(Mux(tok == N - 1, 0, tok + 1))
                    for c1 in range(D):
                        h0 = (c1 // dh) * dh
                        with mod.If(i.payload.k[c1]):
                            for c2 in range(dh):
                                mod.d.sync += M[c1][c2].eq(
                                    sat_add(M[c1][c2], i.payload.v[h0 + c2]))
                    with mod.If(tok == N - 1):
                        mod.next = "LOAD_Q"
            with mod.State("LOAD_Q"):
                mod.d.comb += qr.addr.eq(tok)
                mod.d.sync += [pend.eq(qr.data)] + [a.eq(0) for a in acc]
                mod.next = "EVENTS"
            with mod.State("EVENTS"):
                with mod.If(pend != 0):
                    # one q event (lowest pending channel): add its M row into the head's lanes
                    for h in range(self.heads):
                        for c2 in range(dh):
                            sel = Const(0, cw)
                            for c1 in range(h * dh, (h + 1) * dh):
                                sel = sel | Mux(onehot[c1], M[c1][c2], 0)
                            lane = acc[h * dh + c2]
                            mod.d.sync += lane.eq(sat_add(lane, sel))
                    mod.d.sync += pend.eq(pend & ~onehot)
                with mod.Else():
                    mod.next = "LIF"
            with mod.State("LIF"):
                mod.d.comb += vr.addr.eq(tok)
                spikes = []
                for c in range(D):
                    h = Signal(cw, name=f"h{c}")
                    mod.d.comb += h.eq((vr.data[c] + acc[c]) >> 1)
                    fire = h >= TH
                    spikes.append(fire)
                    mod.d.comb += vw.data[c].eq(Mux(fire, 0, h[:2]))
                mod.d.comb += [o.valid.eq(1), o.payload.s.eq(Cat(*spikes)),
                               o.payload.last.eq(tok == N - 1)]
                with mod.If(o.ready):
                    mod.d.comb += [vw.addr.eq(tok), vw.en.eq(1)]
                    mod.d.sync += tok.eq(Mux(tok == N - 1, 0, tok + 1))
                    with mod.If(tok == N - 1):
                        mod.d.sync += [mm.eq(0) for row in M for mm in row]
                        mod.next = "IN"
                    with mod.Else():
                        mod.next = "LOAD_Q"
        return mod


def _synth_sesa(params: dict) -> SpikeProductUnit:
    """Synthesis factory: SESA Q·Kᵀ (``which=qk``) or attn·V (``which=av``) of block 0 of a random
    reference-size model (17 tokens, 64 dims, 4 heads), bounds from the width analysis."""
    from ..model.factory import random_vit

    art = random_vit(0, dim=int(params.get("dim", 64)), heads=int(params.get("heads", 4)), depth=1,
                     levels=int(params.get("levels", 16)))
    return SpikeProductUnit.for_block(art, 0, str(params.get("which", "qk")))


def _synth_sdsa(params: dict) -> SDSAUnit:
    """Synthesis factory: SDSA-1 or SDSA-3 (``mode``) at the reference size (17 tokens, 64 dims)."""
    return SDSAUnit(int(params.get("mode", 3)), int(params.get("tokens", 17)),
                    int(params.get("dim", 64)), int(params.get("heads", 4)))


SYNTH_BLOCKS = {
    "sesa": (_synth_sesa, {"dim": 64, "heads": 4, "levels": 16, "which": "qk"},
             [{"which": "qk"}, {"which": "av"}]),
    "sdsa": (_synth_sdsa, {"mode": 3, "tokens": 17, "dim": 64, "heads": 4},
             [{"mode": 1}, {"mode": 3}]),
}
