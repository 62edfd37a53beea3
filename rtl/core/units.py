"""The core's execution units: one per instruction family (:mod:`equispike.compiler.isa`).

Each unit runs one instruction at a time: ``start`` (one cycle, with ``ins`` and ``t_zero`` held
until ``done``), then a loop of *items*, one per cycle, each a row read in cycle ``k`` and written
in cycle ``k + 1`` from the read data (memories read synchronously). A read-modify-write unit
relies on the ``D`` port A being transparent to the write port, so consecutive items on the same
row see each other's result. ``done`` pulses when the last write has happened.
"""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.isa import CoreParams, instr_fields
from .ports import ReadPort, WritePort, lane, log2_exact, pack
from .scanner import EventScanner

__all__ = [
    "instr_layout",
    "CopyUnit",
    "NResetUnit",
    "NeuronUnit",
    "SpkAddUnit",
    "AwUnit",
    "TransUnit",
    "SrowUnit",
    "NormUnit",
    "unit_members",
]


def instr_layout(params: CoreParams) -> data.StructLayout:
    return data.StructLayout({name: (signed(w) if s else unsigned(w)) for name, w, s in instr_fields(params)})


def addr_width(params: CoreParams) -> int:
    return params.field_width("dbase")


def unit_members(params: CoreParams, **ports) -> dict:
    """Signature members common to every unit plus its ports."""
    return {"start": In(1), "done": Out(1), "ins": In(instr_layout(params)), "t_zero": In(1), **ports}


class _Unit(wiring.Component):
    def __init__(self, params: CoreParams, **ports):
        if not isinstance(params, CoreParams):
            raise TypeError(f"params must be a CoreParams, got {type(params).__name__}")
        self.p = params
        self.P = params.lanes
        self.lg = log2_exact(params.lanes)
        self.aw = addr_width(params)
        super().__init__(unit_members(params, **ports))

    def _ports_d(self):
        aw, P, p = self.aw, self.P, self.p
        return ReadPort(aw, P * p.dw), WritePort(aw, P * p.dw)


class CopyUnit(_Unit):
    """``COPY``: ``count`` rows of ``D`` (or zeros) into ``D`` or ``S``; one row per cycle,
    ``count + 2`` cycles from ``start`` to ``done``. Each lane is shifted right (arithmetic) by
    ``imm`` and, with ``has_bias``, the row ``D[bbase + i]`` (port B) is added: the requantization of
    an analog first layer. A shift of ``dw − 1`` or more leaves the sign.

    Members: ``d_rd`` (D port A), ``d_rdb`` (D port B, the bias), ``d_wr``, ``s_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P = addr_width(params), params.lanes
        super().__init__(
            params,
            d_rd=Out(ReadPort(aw, P * params.dw)),
            d_rdb=Out(ReadPort(aw, P * params.dw)),
            d_wr=Out(WritePort(aw, P * params.dw)),
            s_wr=Out(WritePort(aw, P * 2)),
        )

    def elaborate(self, platform):
        m = Module()
        ins = self.ins
        i = Signal(self.aw)
        run = Signal()
        w_en = Signal()
        w_addr = Signal(self.aw)
        take = Signal()
        m.d.comb += take.eq(~ins.zero & (~ins.t0 | self.t_zero))
        with m.If(self.start):
            m.d.sync += [i.eq(0), run.eq(ins.count != 0)]
        m.d.sync += w_en.eq(0)
        with m.If(run):
            m.d.comb += [
                self.d_rd.addr.eq(ins.sbase + i),
                self.d_rd.en.eq(1),
                self.d_rdb.addr.eq(ins.bbase + i),
                self.d_rdb.en.eq(ins.has_bias),
            ]
            m.d.sync += [w_en.eq(1), w_addr.eq(ins.dbase + i), i.eq(i + 1)]
            with m.If(i + 1 >= ins.count):
                m.d.sync += run.eq(0)
        p = self.p
        # the shift saturates at dw − 1 (sign fill): a narrow shifter whatever the imm field's width
        sb = max(1, (p.dw - 1).bit_length())
        sh = Signal(sb)
        m.d.comb += sh.eq(Mux(ins.imm >= p.dw - 1, p.dw - 1, ins.imm[:sb]))
        lanes = []
        for k in range(self.P):
            x = lane(self.d_rd.data, k, p.dw) >> sh
            b = Mux(ins.has_bias, lane(self.d_rdb.data, k, p.dw), 0)
            lanes.append((x + b)[: p.dw])
        value = Mux(take, pack(lanes, p.dw), 0)
        m.d.comb += [
            self.d_wr.addr.eq(w_addr),
            self.d_wr.data.eq(value),
            self.d_wr.en.eq(w_en & ~ins.mem),
            self.s_wr.addr.eq(w_addr),
            self.s_wr.data.eq(0),
            self.s_wr.en.eq(w_en & ins.mem),
        ]
        busy = Signal()
        m.d.sync += busy.eq(self.start | (busy & (run | w_en)))
        m.d.comb += self.done.eq(busy & ~run & ~w_en & ~self.start)
        return m


class _RowLoop:
    """Nested item counters ``n < nvec``, ``c < nch`` with the running row ``r = n·nch + c`` and a
    running vector base ``vb = base + n·stride`` (no multipliers)."""

    def __init__(self, m: Module, aw: int, name: str):
        self.n = Signal(aw, name=f"{name}_n")
        self.c = Signal(aw, name=f"{name}_c")
        self.r = Signal(aw, name=f"{name}_r")
        self.vb = Signal(aw, name=f"{name}_vb")
        self.run = Signal(name=f"{name}_run")
        self.m = m

    def begin(self, nvec, nch, base):
        self.m.d.sync += [
            self.n.eq(0),
            self.c.eq(0),
            self.r.eq(0),
            self.vb.eq(base),
            self.run.eq((nvec != 0) & (nch != 0)),
        ]

    def advance(self, nvec, nch, stride):
        m = self.m
        m.d.sync += self.r.eq(self.r + 1)
        with m.If(self.c + 1 >= nch):
            m.d.sync += [self.c.eq(0), self.n.eq(self.n + 1), self.vb.eq(self.vb + stride)]
            with m.If(self.n + 1 >= nvec):
                m.d.sync += self.run.eq(0)
        with m.Else():
            m.d.sync += self.c.eq(self.c + 1)


def _done(m: Module, unit, running, pipe) -> None:
    busy = Signal()
    m.d.sync += busy.eq(unit.start | (busy & (running | pipe)))
    m.d.comb += unit.done.eq(busy & ~running & ~pipe & ~unit.start)


class NResetUnit(_Unit):
    """``NRESET``: ``V = Θ >> 1`` (``V = 0`` with ``lif``), ``T = 0`` for every row; one row per cycle.

    Members: ``q_rd``, ``v_wr``, ``t_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P = addr_width(params), params.lanes
        super().__init__(
            params,
            q_rd=Out(ReadPort(aw, P * params.pw)),
            v_wr=Out(WritePort(aw, P * params.vw)),
            t_wr=Out(WritePort(aw, P * params.tw)),
        )

    def elaborate(self, platform):
        m = Module()
        ins, P, p = self.ins, self.P, self.p
        lp = _RowLoop(m, self.aw, "nr")
        w_en = Signal()
        w_r = Signal(self.aw)
        with m.If(self.start):
            lp.begin(ins.nvec, ins.nch, 0)
        m.d.sync += w_en.eq(0)
        with m.If(lp.run):
            m.d.comb += [self.q_rd.addr.eq(ins.pbase + lp.c), self.q_rd.en.eq(1)]
            m.d.sync += [w_en.eq(1), w_r.eq(lp.r)]
            lp.advance(ins.nvec, ins.nch, 0)
        half = [Mux(ins.lif, 0, lane(self.q_rd.data, i, p.pw, signed=False) >> 1)[: p.vw] for i in range(P)]
        m.d.comb += [
            self.v_wr.addr.eq(ins.vbase + w_r),
            self.v_wr.en.eq(w_en),
            self.v_wr.data.eq(pack(half, p.vw)),
            self.t_wr.addr.eq(ins.tbase + w_r),
            self.t_wr.en.eq(w_en),
            self.t_wr.data.eq(0),
        ]
        _done(m, self, lp.run, w_en)
        return m


def _ternary(word, i: int):
    """Lane ``i`` of a spike row as (is +1, is −1)."""
    s = word[2 * i : 2 * i + 2]
    return (s == 0b01), (s == 0b11)


class NeuronUnit(_Unit):
    """``NEURON``: the ST-BIF step of SPEC §2 on every row, one row (``P`` neurons) per cycle.

    Item ``r = n·nch + c``: ``H = V + I (+ bias at t = 0)``; spike ``+1`` if ``H ≥ Θ`` and
    ``S < Qp``, ``−1`` if ``H < 0`` and ``S > Qn``; ``V = H − s·Θ``, ``S += s``; the current row is
    cleared. The row's spikes go to ``S``, the trace output (``trace_valid``, ``trace_row``) and the
    spike count (``count``, valid with ``done``); ``fired`` pulses for any nonzero spike, a cycle
    after the row is written (so ``done`` comes a cycle after the last write).
    With ``lif`` (SPEC §8): ``h = (V + I + b) >> 1`` with the bias at every step, spike ``+1`` if
    ``h ≥ Θ``, ``V = 0`` after a spike else ``h``, ``T`` not written. With ``keep`` the current row
    is not cleared.

    Members: ``d_rd`` (current, port A), ``d_rdb`` (bias, port B), ``d_wr``, ``q_rd``, ``v_rd``,
    ``v_wr``, ``t_rd``, ``t_wr``, ``s_wr``; outputs ``trace_valid``, ``trace_row``, ``trace_spikes``,
    ``fired``, ``count``.
    """

    def __init__(self, params: CoreParams):
        aw, P, p = addr_width(params), params.lanes, params
        super().__init__(
            params,
            d_rd=Out(ReadPort(aw, P * p.dw)),
            d_rdb=Out(ReadPort(aw, P * p.dw)),
            d_wr=Out(WritePort(aw, P * p.dw)),
            q_rd=Out(ReadPort(aw, P * p.pw)),
            v_rd=Out(ReadPort(aw, P * p.vw)),
            v_wr=Out(WritePort(aw, P * p.vw)),
            t_rd=Out(ReadPort(aw, P * p.tw)),
            t_wr=Out(WritePort(aw, P * p.tw)),
            s_wr=Out(WritePort(aw, P * 2)),
            trace_valid=Out(1),
            trace_row=Out(aw),
            trace_spikes=Out(2 * P),
            fired=Out(1),
            count=Out(p.count_width),
        )

    def elaborate(self, platform):
        m = Module()
        ins, P, p = self.ins, self.P, self.p
        lp = _RowLoop(m, self.aw, "nu")
        s1 = Signal()  # item in its write cycle
        s1_r = Signal(self.aw)
        s1_cur = Signal(self.aw)
        with m.If(self.start):
            lp.begin(ins.nvec, ins.nch, ins.dbase)
            m.d.sync += self.count.eq(0)
        m.d.sync += s1.eq(0)
        with m.If(lp.run):
            m.d.comb += [
                self.d_rd.addr.eq(lp.vb + lp.c),
                self.d_rd.en.eq(1),
                self.d_rdb.addr.eq(ins.bbase + lp.c),
                self.d_rdb.en.eq(1),
                self.q_rd.addr.eq(ins.pbase + lp.c),
                self.q_rd.en.eq(1),
                self.v_rd.addr.eq(ins.vbase + lp.r),
                self.v_rd.en.eq(1),
                self.t_rd.addr.eq(ins.tbase + lp.r),
                self.t_rd.en.eq(1),
            ]
            m.d.sync += [s1.eq(1), s1_r.eq(lp.r), s1_cur.eq(lp.vb + lp.c)]
            lp.advance(ins.nvec, ins.nch, ins.dstride)
        use_bias = Signal()
        m.d.comb += use_bias.eq(ins.has_bias & (self.t_zero | ins.lif))
        hw = max(p.vw, p.dw) + 2
        v_out, t_out, s_out, nz = [], [], [], []
        for i in range(P):
            cur = lane(self.d_rd.data, i, p.dw)
            b = Mux(use_bias, lane(self.d_rdb.data, i, p.dw), 0)
            th = lane(self.q_rd.data, i, p.pw, signed=False)
            v = lane(self.v_rd.data, i, p.vw)
            s = lane(self.t_rd.data, i, p.tw)
            h = Signal(signed(hw), name=f"h{i}")
            m.d.comb += h.eq(v + cur + b)
            # LIF: τ = 2 halving, floor (arithmetic shift of the signed sum), hard reset to 0
            hl = Signal(signed(hw), name=f"hl{i}")
            m.d.comb += hl.eq(h >> 1)
            fire = hl >= th
            up = Mux(ins.lif, fire, (h >= th) & (s < ins.qp))
            dn = ~ins.lif & (h < 0) & (s > ins.qn)
            v_st = Mux(up, h - th, Mux(dn, h + th, h))
            v_out.append(Mux(ins.lif, Mux(fire, 0, hl), v_st)[: p.vw])
            t_out.append(Mux(up, s + 1, Mux(dn, s - 1, s))[: p.tw])
            s_out.append(Mux(up, C(0b01, 2), Mux(dn, C(0b11, 2), C(0, 2))))
            nz.append(up | dn)
        spikes = pack(s_out, 2)
        m.d.comb += [
            self.v_wr.addr.eq(ins.vbase + s1_r),
            self.v_wr.en.eq(s1),
            self.v_wr.data.eq(pack(v_out, p.vw)),
            self.t_wr.addr.eq(ins.tbase + s1_r),
            self.t_wr.en.eq(s1 & ~ins.lif),
            self.t_wr.data.eq(pack(t_out, p.tw)),
            self.s_wr.addr.eq(ins.sbase + s1_r),
            self.s_wr.en.eq(s1),
            self.s_wr.data.eq(spikes),
            self.d_wr.addr.eq(s1_cur),
            self.d_wr.en.eq(s1 & ~ins.keep),
            self.d_wr.data.eq(0),
            self.trace_valid.eq(s1),
            self.trace_row.eq(ins.sbase + s1_r),
            self.trace_spikes.eq(spikes),
        ]
        # the spike flags are registered before they are counted: the count and ``fired`` would
        # otherwise end the longest path of the core (read data, sum, compare, P-input popcount)
        s2 = Signal()
        nzv = Signal(P)
        m.d.sync += s2.eq(s1)
        with m.If(s1):
            m.d.sync += nzv.eq(Cat(*nz))
        with m.If(s2):
            m.d.sync += self.count.eq(self.count + sum(nzv[i] for i in range(P)))
            m.d.comb += self.fired.eq(nzv.any())
        _done(m, self, lp.run, s1 | s2)
        return m


class SpkAddUnit(_Unit):
    """``SPKADD``: ``D[dbase + n·dstride + c] += imm · S[sbase + n·nch + c]``, one row per cycle.

    Members: ``s_rd``, ``d_rd`` (port A), ``d_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P = addr_width(params), params.lanes
        super().__init__(
            params,
            s_rd=Out(ReadPort(aw, P * 2)),
            d_rd=Out(ReadPort(aw, P * params.dw)),
            d_wr=Out(WritePort(aw, P * params.dw)),
        )

    def elaborate(self, platform):
        m = Module()
        ins, P, p = self.ins, self.P, self.p
        lp = _RowLoop(m, self.aw, "sa")
        s1 = Signal()
        s1_a = Signal(self.aw)
        with m.If(self.start):
            lp.begin(ins.nvec, ins.nch, ins.dbase)
        m.d.sync += s1.eq(0)
        with m.If(lp.run):
            m.d.comb += [
                self.s_rd.addr.eq(ins.sbase + lp.r),
                self.s_rd.en.eq(1),
                self.d_rd.addr.eq(lp.vb + lp.c),
                self.d_rd.en.eq(1),
            ]
            m.d.sync += [s1.eq(1), s1_a.eq(lp.vb + lp.c)]
            lp.advance(ins.nvec, ins.nch, ins.dstride)
        imm = ins.imm
        out = []
        for i in range(P):
            pos, neg = _ternary(self.s_rd.data, i)
            x = lane(self.d_rd.data, i, p.dw)
            out.append(Mux(pos, x + imm, Mux(neg, x - imm, x))[: p.dw])
        m.d.comb += [self.d_wr.addr.eq(s1_a), self.d_wr.en.eq(s1), self.d_wr.data.eq(pack(out, p.dw))]
        _done(m, self, lp.run, s1)
        return m


class AwUnit(_Unit):
    """``AW``: event-driven accumulation (SPEC §3, §4), one item (event × output chunk) per cycle.

    An :class:`EventScanner` turns the source rows into events; each event ``(n, j, ±2^b)`` is
    prepared (matrix row ``mbase + (j − joff)·mstride``, destination ``dbase + n·dstride``) while
    the previous one issues, then issues one item per chunk ``d0 ≤ e < d1``: read the matrix row
    (``W`` or ``D`` port B) and the destination row (``D`` port A), write ``dst ± (M << b)`` on the
    lanes whose channel is in ``[dlo, dhi)``. Throughput: one item per cycle while events are
    ready; the scanner gives one event per cycle and drops source rows without events while
    events are pending (:class:`EventScanner` timing).

    Members: ``s_rd``, ``i_rd`` (source rows), ``w_rd``, ``d_rdb`` (matrix), ``d_rd`` (port A), ``d_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P, p = addr_width(params), params.lanes, params
        super().__init__(
            params,
            s_rd=Out(ReadPort(aw, P * 2)),
            i_rd=Out(ReadPort(aw, P * p.iw)),
            w_rd=Out(ReadPort(aw, P * 8)),
            d_rdb=Out(ReadPort(aw, P * p.dw)),
            d_rd=Out(ReadPort(aw, P * p.dw)),
            d_wr=Out(WritePort(aw, P * p.dw)),
        )

    def elaborate(self, platform):
        m = Module()
        ins, P, p, aw = self.ins, self.P, self.p, self.aw
        m.submodules.scan = sc = EventScanner(P, aw, p.iw)
        iw = sc.iw
        skip = Signal()
        m.d.comb += skip.eq(ins.t0 & ~self.t_zero)
        m.d.comb += [
            sc.start.eq(self.start & ~skip),
            sc.nvec.eq(ins.nvec),
            sc.sbase.eq(ins.sbase),
            sc.sstride.eq(ins.sstride),
            sc.c0.eq(ins.c0),
            sc.c1.eq(ins.c1),
            sc.lo.eq(ins.lo),
            sc.hi.eq(ins.hi),
            sc.src.eq(ins.src),
            self.s_rd.addr.eq(sc.rd.addr),
            self.s_rd.en.eq(sc.rd.en & (ins.src == 0)),
            self.i_rd.addr.eq(sc.rd.addr),
            self.i_rd.en.eq(sc.rd.en & (ins.src != 0)),
        ]
        # scanner lanes: spikes sign-extended to iw bits, or the codes
        src_lanes = []
        for i in range(P):
            sp = self.s_rd.data[2 * i : 2 * i + 2].as_signed()
            code = self.i_rd.data[i * p.iw : (i + 1) * p.iw]
            src_lanes.append(Mux(ins.src == 0, sp, code)[:iw])
        m.d.comb += sc.rd.data.eq(pack(src_lanes, iw))
        scan_busy = Signal()
        with m.If(self.start & ~skip):
            m.d.sync += scan_busy.eq(1)
        with m.If(sc.done):
            m.d.sync += scan_busy.eq(0)

        # prepared event
        pv = Signal()
        p_m = Signal(aw)
        p_d = Signal(aw)
        p_neg = Signal()
        p_sh = Signal(len(sc.o_stream.payload.shift))
        # issuing event
        iv = Signal()
        i_m = Signal(aw)
        i_d = Signal(aw)
        i_neg = Signal()
        i_sh = Signal(len(p_sh))
        e = Signal(aw)
        last_item = Signal()
        m.d.comb += last_item.eq(e + 1 >= ins.d1)
        take_issue = Signal()  # the issue stage takes the prepared event this cycle
        m.d.comb += take_issue.eq(pv & (~iv | last_item))
        m.d.comb += sc.o_stream.ready.eq(~pv | take_issue)
        ev = sc.o_stream.payload
        with m.If(sc.o_stream.valid & sc.o_stream.ready):
            m.d.sync += [
                pv.eq(1),
                p_m.eq(ins.mbase + (ev.j - ins.joff) * ins.mstride),
                p_d.eq(ins.dbase + ev.n * ins.dstride),
                p_neg.eq(ev.neg),
                p_sh.eq(ev.shift),
            ]
        with m.Elif(take_issue):
            m.d.sync += pv.eq(0)
        s1 = Signal()
        s1_a = Signal(aw)
        s1_e = Signal(aw)
        s1_neg = Signal()
        s1_sh = Signal(len(p_sh))
        m.d.sync += s1.eq(0)
        with m.If(iv):
            m.d.comb += [
                self.w_rd.addr.eq(i_m + e),
                self.w_rd.en.eq(ins.msrc == 0),
                self.d_rdb.addr.eq(i_m + e),
                self.d_rdb.en.eq(ins.msrc == 1),
                self.d_rd.addr.eq(i_d + e),
                self.d_rd.en.eq(1),
            ]
            m.d.sync += [
                s1.eq(1),
                s1_a.eq(i_d + e),
                s1_e.eq(e),
                s1_neg.eq(i_neg),
                s1_sh.eq(i_sh),
                e.eq(e + 1),
            ]
        with m.If(take_issue):
            m.d.sync += [iv.eq(1), i_m.eq(p_m), i_d.eq(p_d), i_neg.eq(p_neg), i_sh.eq(p_sh), e.eq(ins.d0)]
        with m.Elif(iv & last_item):
            m.d.sync += iv.eq(0)
        out = []
        for i in range(P):
            wv = Mux(ins.msrc == 0, lane(self.w_rd.data, i, 8), lane(self.d_rdb.data, i, p.dw))
            sh = Signal(signed(p.dw + iw + 1), name=f"aw_sh{i}")
            m.d.comb += sh.eq(wv << s1_sh)
            x = lane(self.d_rd.data, i, p.dw)
            ch = (s1_e << self.lg) | i
            inside = (ch >= ins.dlo) & (ch < ins.dhi)
            out.append(Mux(inside, Mux(s1_neg, x - sh, x + sh), x)[: p.dw])
        m.d.comb += [self.d_wr.addr.eq(s1_a), self.d_wr.en.eq(s1), self.d_wr.data.eq(pack(out, p.dw))]
        running = Signal()
        m.d.comb += running.eq(scan_busy | pv | iv)
        busy = Signal()
        m.d.sync += busy.eq(self.start | (busy & (running | s1)))
        m.d.comb += self.done.eq(busy & ~running & ~s1 & ~self.start)
        return m


class TransUnit(_Unit):
    """``TRANS``: each spike ``σ`` of channel ``j`` of vector ``m`` adds ``σ`` to lane ``m mod P`` of
    ``D[dbase + (j − lo)·dstride + m div P]`` and writes ``σ`` to that lane of ``S[obase + …]``;
    one event per cycle (:class:`EventScanner` timing).

    Members: ``s_rd`` (source rows), ``s_rd2`` (the ``S`` row being modified, transparent),
    ``s_wr``, ``d_rd`` (port A), ``d_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P, p = addr_width(params), params.lanes, params
        super().__init__(
            params,
            s_rd=Out(ReadPort(aw, P * 2)),
            s_rd2=Out(ReadPort(aw, P * 2)),
            s_wr=Out(WritePort(aw, P * 2)),
            d_rd=Out(ReadPort(aw, P * p.dw)),
            d_wr=Out(WritePort(aw, P * p.dw)),
        )

    def elaborate(self, platform):
        m = Module()
        ins, P, p, aw = self.ins, self.P, self.p, self.aw
        m.submodules.scan = sc = EventScanner(P, aw, 2)
        m.d.comb += [
            sc.start.eq(self.start),
            sc.nvec.eq(ins.nvec),
            sc.sbase.eq(ins.sbase),
            sc.sstride.eq(ins.nch),
            sc.c0.eq(0),
            sc.c1.eq(ins.nch),
            sc.lo.eq(ins.lo),
            sc.hi.eq(ins.hi),
            sc.src.eq(0),
            self.s_rd.addr.eq(sc.rd.addr),
            self.s_rd.en.eq(sc.rd.en),
            sc.rd.data.eq(self.s_rd.data),
            sc.o_stream.ready.eq(1),
        ]
        scan_busy = Signal()
        with m.If(self.start):
            m.d.sync += scan_busy.eq(1)
        with m.If(sc.done):
            m.d.sync += scan_busy.eq(0)
        ev = sc.o_stream.payload
        off = Signal(aw)
        m.d.comb += off.eq((ev.j - ins.lo) * ins.dstride + (ev.n >> self.lg))
        s1 = Signal()
        s1_off = Signal(aw)
        s1_lane = Signal(self.lg if self.lg else 1)
        s1_neg = Signal()
        m.d.sync += s1.eq(0)
        with m.If(sc.o_stream.valid):
            m.d.comb += [
                self.d_rd.addr.eq(ins.dbase + off),
                self.d_rd.en.eq(1),
                self.s_rd2.addr.eq(ins.obase + off),
                self.s_rd2.en.eq(1),
            ]
            m.d.sync += [
                s1.eq(1),
                s1_off.eq(off),
                s1_lane.eq(ev.n[: max(1, self.lg)] if self.lg else 0),
                s1_neg.eq(ev.neg),
            ]
        dout, sout = [], []
        for i in range(P):
            x = lane(self.d_rd.data, i, p.dw)
            hit = s1_lane == i
            dout.append(Mux(hit, Mux(s1_neg, x - 1, x + 1), x)[: p.dw])
            sout.append(Mux(hit, Mux(s1_neg, C(0b11, 2), C(0b01, 2)), self.s_rd2.data[2 * i : 2 * i + 2]))
        m.d.comb += [
            self.d_wr.addr.eq(ins.dbase + s1_off),
            self.d_wr.en.eq(s1),
            self.d_wr.data.eq(pack(dout, p.dw)),
            self.s_wr.addr.eq(ins.obase + s1_off),
            self.s_wr.en.eq(s1),
            self.s_wr.data.eq(pack(sout, 2)),
        ]
        busy = Signal()
        m.d.sync += busy.eq(self.start | (busy & (scan_busy | s1)))
        m.d.comb += self.done.eq(busy & ~scan_busy & ~s1 & ~self.start)
        return m


class SrowUnit(_Unit):
    """``SROW``: scalar × spike vector (the second SESA term), one item per nonzero product.

    Two phases. *Flags*: the spike vectors ``S[sbase + r·sstride + c]`` (``c0 ≤ c < c1``, lanes of
    channels in ``[lo, hi)``) are read through both ``S`` ports, two rows at a time, one chunk
    per cycle, and column ``r + joff`` is flagged when row ``r`` is not all zero. *Items*: an
    :class:`EventScanner` reads the scalar rows ``D[mbase + n·mstride + k]`` (port B) over the
    chunks ``k`` of the columns ``[joff, joff + count)``; a column is an event when its scalar is
    nonzero and its spike row is flagged, so a zero scalar or a silent spike row costs nothing. The
    scanned row is copied on ``load``; each event ``(n, r + joff, a)`` is prepared (spike row
    ``sbase + r·sstride``, destination ``dbase + n·dstride``) while the previous one issues, then
    issues one item per chunk ``c``: ``D[dbase + n·dstride + c] += a · spike`` on the lanes of
    channels in ``[lo, hi)`` (port A and the write port). Consecutive items of one ``n`` meet on
    one row: port A is transparent to the write.

    Timing: the flags take ``⌈count / 2⌉ · (c1 − c0) + 1`` cycles (the scanner reads its first
    row meanwhile); then one cycle per event and chunk, scalar rows without events costing a
    cycle only when no event is pending (:class:`EventScanner`), and the last event's two
    pipeline cycles.

    Members: ``s_rd`` (odd rows' flags, then the items), ``s_rd2`` (even rows' flags), ``d_rdb``
    (the scalars), ``d_rd`` (port A), ``d_wr``.
    """

    def __init__(self, params: CoreParams):
        aw, P, p = addr_width(params), params.lanes, params
        super().__init__(
            params,
            s_rd=Out(ReadPort(aw, P * 2)),
            s_rd2=Out(ReadPort(aw, P * 2)),
            d_rdb=Out(ReadPort(aw, P * p.dw)),
            d_rd=Out(ReadPort(aw, P * p.dw)),
            d_wr=Out(WritePort(aw, P * p.dw)),
        )
        #: flag words: one bit per scalar column, ``P`` columns a word
        self.flag_words = -(-params.srow_columns // P)

    def _mask(self, word, chunk):
        """The spikes of ``word`` (chunk ``chunk`` of a row) on the lanes of channels in ``[lo, hi)``."""
        ins, P, lg = self.ins, self.P, self.lg
        out = []
        for i in range(P):
            ch = (chunk << lg) | i
            inside = (ch >= ins.lo) & (ch < ins.hi)
            out.append(Mux(inside, word[2 * i : 2 * i + 2], 0))
        return Cat(*out)

    def _probe(self, m: Module, port, parity: int) -> dict:
        """A flags probe: reads the chunks of spike rows ``r ≡ parity (mod 2)`` through ``port``,
        one per cycle, from a ``start``; ``set[k]``: the flag bits of word ``k`` to set this cycle."""
        ins, P, lg, aw, fw = self.ins, self.P, self.lg, self.aw, self.flag_words
        pre = f"probe{parity}"
        sr = Signal(aw, name=f"{pre}_r")  # row being probed
        srow = Signal(aw, name=f"{pre}_row")
        sc = Signal(aw, name=f"{pre}_c")  # its next chunk
        probing = Signal(name=f"{pre}_on")
        p_valid = Signal(name=f"{pre}_valid")  # a probe's data arrives this cycle
        p_c = Signal(aw, name=f"{pre}_pc")
        p_col = Signal(aw, name=f"{pre}_col")  # r + joff of the probed row
        p_last = Signal(name=f"{pre}_last")  # it is the row's last chunk
        any_nz = Signal(name=f"{pre}_nz")  # a nonzero chunk of the row seen before this cycle's
        probe_nz = Signal(name=f"{pre}_pnz")
        hot = Signal(P, name=f"{pre}_hot")  # the column's lane, one-hot
        found = Signal(name=f"{pre}_found")  # row p_col is not all zero (valid with p_last)
        sets = [Signal(P, name=f"{pre}_set{k}") for k in range(fw)]
        m.d.sync += p_valid.eq(0)
        m.d.comb += [
            probe_nz.eq(self._mask(port.data, p_c) != 0),
            hot.eq(C(1, P) << p_col[:lg]),
            found.eq(p_valid & p_last & (any_nz | probe_nz)),
        ]
        for k in range(fw):
            m.d.comb += sets[k].eq(Mux(found & ((p_col >> lg) == k), hot, 0))
        with m.If(self.start):
            m.d.sync += [
                sr.eq(parity),
                srow.eq(ins.sbase + (ins.sstride if parity else 0)),
                sc.eq(ins.c0),
                any_nz.eq(0),
                probing.eq((ins.count > parity) & (ins.nvec != 0) & (ins.c1 > ins.c0)),
            ]
        with m.Elif(probing):
            m.d.comb += [port.addr.eq(srow + sc), port.en.eq(1)]
            m.d.sync += [p_valid.eq(1), p_c.eq(sc), p_col.eq(sr + ins.joff), p_last.eq(sc + 1 >= ins.c1)]
            with m.If(sc + 1 >= ins.c1):
                m.d.sync += [sc.eq(ins.c0), sr.eq(sr + 2), srow.eq(srow + (ins.sstride << 1))]
                with m.If(sr + 2 >= ins.count):
                    m.d.sync += probing.eq(0)
            with m.Else():
                m.d.sync += sc.eq(sc + 1)
        with m.If(p_valid):
            with m.If(p_last):
                m.d.sync += any_nz.eq(0)
            with m.Elif(probe_nz):
                m.d.sync += any_nz.eq(1)
        return {"probing": probing, "set": sets}

    def elaborate(self, platform):
        m = Module()
        ins, P, p, aw, lg = self.ins, self.P, self.p, self.aw, self.lg
        fw = self.flag_words

        # ---- flags: which spike rows are not all zero ------------------------------------------------
        # two probes, one per S port (the items need port 1 only after the flags): rows r ≡ 0 and
        # r ≡ 1 (mod 2), one chunk per cycle each
        flags = [Signal(P, name=f"flag{k}") for k in range(fw)]
        probes = [self._probe(m, port, parity) for parity, port in enumerate((self.s_rd2, self.s_rd))]
        for k in range(fw):
            m.d.sync += flags[k].eq(flags[k] | probes[0]["set"][k] | probes[1]["set"][k])
        probing = Signal()
        m.d.comb += probing.eq(probes[0]["probing"] | probes[1]["probing"])

        # ---- scanner: the nonzero scalars of flagged columns -----------------------------------------
        m.submodules.scan = scan = EventScanner(P, aw, p.dw, codes=False, masked=True)
        scan_start = Signal()
        m.d.comb += [
            scan.start.eq(scan_start),
            scan.nvec.eq(ins.nvec),
            scan.sbase.eq(ins.mbase),
            scan.sstride.eq(ins.mstride),
            scan.c0.eq(ins.joff >> lg),
            scan.c1.eq(((ins.joff + ins.count - 1) >> lg) + 1),
            scan.lo.eq(ins.joff),
            scan.hi.eq(ins.joff + ins.count),
            self.d_rdb.addr.eq(scan.rd.addr),
            self.d_rdb.en.eq(scan.rd.en),
            scan.rd.data.eq(self.d_rdb.data),
        ]
        with m.Switch(scan.chunk):
            for k in range(fw):
                with m.Case(k):
                    m.d.comb += scan.mask.eq(flags[k])
        # the scanned row, for the events' scalars (the port reads the next row meanwhile)
        arow = Signal(P * p.dw)
        with m.If(scan.load):
            m.d.sync += arow.eq(self.d_rdb.data)

        # ---- executor: prepared event, issuing event (one item per chunk) ----------------------------
        pv = Signal()
        p_s = Signal(aw)
        p_d = Signal(aw)
        p_a = Signal(signed(p.dw))
        iv = Signal()
        i_s = Signal(aw)
        i_d = Signal(aw)
        i_a = Signal(signed(p.dw))
        c = Signal(aw)
        last_item = Signal()
        m.d.comb += last_item.eq(c + 1 >= ins.c1)
        take_issue = Signal()
        m.d.comb += take_issue.eq(pv & (~iv | last_item))
        m.d.comb += scan.o_stream.ready.eq(~pv | take_issue)
        ev = scan.o_stream.payload
        a_ev = Signal(signed(p.dw))
        with m.Switch(ev.j[:lg] if lg else 0):
            for i in range(P):
                with m.Case(i):
                    m.d.comb += a_ev.eq(lane(arow, i, p.dw))
        with m.If(scan.o_stream.valid & scan.o_stream.ready):
            m.d.sync += [
                pv.eq(1),
                p_s.eq(ins.sbase + (ev.j - ins.joff) * ins.sstride),
                p_d.eq(ins.dbase + ev.n * ins.dstride),
                p_a.eq(a_ev),
            ]
        with m.Elif(take_issue):
            m.d.sync += pv.eq(0)
        s1 = Signal()
        s1_a = Signal(aw)
        s1_c = Signal(aw)
        s1_v = Signal(signed(p.dw))
        m.d.sync += s1.eq(0)
        with m.If(iv):
            m.d.comb += [
                self.s_rd.addr.eq(i_s + c),
                self.s_rd.en.eq(1),
                self.d_rd.addr.eq(i_d + c),
                self.d_rd.en.eq(1),
            ]
            m.d.sync += [s1.eq(1), s1_a.eq(i_d + c), s1_c.eq(c), s1_v.eq(i_a), c.eq(c + 1)]
        with m.If(take_issue):
            m.d.sync += [iv.eq(1), i_s.eq(p_s), i_d.eq(p_d), i_a.eq(p_a), c.eq(ins.c0)]
        with m.Elif(iv & last_item):
            m.d.sync += iv.eq(0)
        # the masked spikes as one signal: the expression itself, sliced per lane, would be
        # copied into the netlist at every use
        spk = Signal(2 * P)
        m.d.comb += spk.eq(self._mask(self.s_rd.data, s1_c))
        out = []
        for i in range(P):
            pos, neg = _ternary(spk, i)
            x = lane(self.d_rd.data, i, p.dw)
            out.append(Mux(pos, x + s1_v, Mux(neg, x - s1_v, x))[: p.dw])
        m.d.comb += [self.d_wr.addr.eq(s1_a), self.d_wr.en.eq(s1), self.d_wr.data.eq(pack(out, p.dw))]

        # ---- sequence --------------------------------------------------------------------------------
        # the scanner starts with the probes and reads its first scalar row meanwhile; it takes it
        # once the flags are final
        scanning = Signal()
        with m.If(scan.done):
            m.d.sync += scanning.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    # the probes start themselves (_probe)
                    m.d.sync += [f.eq(0) for f in flags]
                    with m.If((ins.count == 0) | (ins.nvec == 0) | (ins.c1 <= ins.c0)):
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += scan_start.eq(1)
                        m.d.sync += scanning.eq(1)
                        m.next = "FLAGS"
            with m.State("FLAGS"):
                m.d.comb += scan.hold.eq(1)
                # the last probes' flags are written at the end of this cycle
                with m.If(~probing):
                    m.next = "ITEMS"
            with m.State("ITEMS"):
                with m.If(~scanning & ~pv & ~iv):
                    # the last item is written back in this cycle
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m


class NormUnit(_Unit):
    """``LN`` and ``SMX``: the differential LayerNorm and softmax (SPEC §5) over rows of ``dim``.

    The *feeder* walks the rows: pass A adds ``ΔU`` into the running input ``X`` (``nch``
    cycles) and notes whether any ``ΔU`` lane is nonzero; a changed row (or every row at
    ``t = 0``) then hands its chunks (with ``Γ``, ``B`` from ``Q`` for the LayerNorm) to the next
    of ``norm_units`` row units (:class:`~equispike.rtl.rownorm.RowLayerNorm` or
    :class:`~equispike.rtl.rownorm.RowSoftmax`, taken in turn), two cycles per chunk into the
    unit's own chunk buffer, and queues the row's address. Each unit streams its buffer one
    element per cycle and collects its outputs into its own output chunk, so the units work on
    their rows at the same time. The *collector* takes the queued rows in order and writes each
    output chunk as ``y − Y_prev`` (the site's current) and ``y`` (three cycles per chunk). A
    row costs the feeder ``nch`` cycles (the next row's first read goes with a row's decision; one
    more when the collector takes the ports in between); a recomputed one-chunk row goes to its unit
    from the pass-A value in the same cycles when the unit is free, a longer row (or one whose unit
    is busy) then reads its chunks again (``2·nch + 1`` more cycles). With enough units the time per
    recomputed one-chunk row tends to ``max(1 + 4, row_interval / norm_units)`` (the collector's
    write-back takes the ports for three cycles and waits one; each unit overlaps up to
    ``rows_in_flight`` rows, and the row queue holds them all).

    The feeder and the collector share the ``D`` ports: the collector's three write-back cycles
    go when the feeder is between memory accesses (the feeder yields while the collector waits).
    ``count`` (valid with ``done``) is the recomputed rows.

    Members: ``d_rd`` (port A), ``d_rdb`` (port B), ``d_wr``, ``q_rd``, ``q_rd2``, ``count``.
    """

    def __init__(self, params: CoreParams):
        if isinstance(params, CoreParams):
            if not isinstance(params.norm_units, int) or isinstance(params.norm_units, bool):
                raise TypeError(f"norm_units must be an int, got {type(params.norm_units).__name__}")
            if not 1 <= params.norm_units <= 16:
                raise ValueError(f"norm_units must be 1 to 16, got {params.norm_units}")
        aw, P, p = addr_width(params), params.lanes, params
        super().__init__(
            params,
            d_rd=Out(ReadPort(aw, P * p.dw)),
            d_rdb=Out(ReadPort(aw, P * p.dw)),
            d_wr=Out(WritePort(aw, P * p.dw)),
            q_rd=Out(ReadPort(aw, P * p.pw)),
            q_rd2=Out(ReadPort(aw, P * p.pw)),
            count=Out(p.count_width),
        )

    def elaborate(self, platform):
        from amaranth.lib.fifo import SyncFIFO

        from ...compiler.isa import Op
        from ..rownorm import RowLayerNorm, RowSoftmax

        m = Module()
        ins, P, p, aw, lg = self.ins, self.P, self.p, self.aw, self.lg
        R = p.norm_units
        lns, smxs = [], []
        for j in range(R):
            ln = RowLayerNorm(
                max_dim=p.max_dim, x_width=p.dw, gamma_width=p.pw, beta_width=p.pw, e_width=p.ew,
                K=p.ln_K, P=p.ln_P,
            )
            smx = RowSoftmax(max_n=p.max_n, z_width=p.dw, c_width=p.cw, G=p.sm_G, H=p.sm_H, F=p.sm_F,
                             P=p.sm_P)
            m.submodules[f"ln{j}"], m.submodules[f"smx{j}"] = ln, smx
            lns.append(ln)
            smxs.append(smx)
        # rows fed, not yet written back (in feeding order): per unit one in its input buffer, the
        # rows it overlaps inside and one in its output buffer, so the queue never stops the feeder
        flight = max(
            max(lns[0].rows_in_flight(d) for d in range(1, p.max_dim + 1)),
            max(smxs[0].rows_in_flight(d) for d in range(1, p.max_n + 1)),
        )
        m.submodules.queue = queue = SyncFIFO(width=aw, depth=R * (flight + 2) + 1)
        is_ln = Signal()
        m.d.comb += is_ln.eq(ins.op == Op.LN)

        def chunk_lanes(c):
            rem = Signal(aw + 1)
            nl = Signal(range(P + 1))
            m.d.comb += [rem.eq(ins.dim - (c << lg)), nl.eq(Mux(rem >= P, P, rem))]
            return nl

        # ---- per-unit serializers ----------------------------------------------------------------
        # Each row unit streams its chunk from its own buffer, so the feeder hands a chunk over in
        # one cycle and moves on: rows overlap in the units instead of queueing behind one feeder.
        ibuf = []  # per unit: (x lanes, Γ lanes, B lanes, full, lane, lanes in chunk, last chunk)
        for j in range(R):
            xs = [Signal(signed(p.dw), name=f"u{j}_x{i}") for i in range(P)]
            gs = [Signal(signed(p.pw), name=f"u{j}_g{i}") for i in range(P)]
            bs = [Signal(signed(p.pw), name=f"u{j}_b{i}") for i in range(P)]
            full = Signal(name=f"u{j}_in_full")
            li = Signal(range(P + 1), name=f"u{j}_in_lane")
            nl = Signal(range(P + 1), name=f"u{j}_in_lanes")
            lastc = Signal(name=f"u{j}_in_lastc")
            ex, eg, eb = (Signal(signed(p.dw), name=f"u{j}_ex"), Signal(signed(p.pw), name=f"u{j}_eg"),
                          Signal(signed(p.pw), name=f"u{j}_eb"))
            with m.Switch(li):
                for i in range(P):
                    with m.Case(i):
                        m.d.comb += [ex.eq(xs[i]), eg.eq(gs[i]), eb.eq(bs[i])]
            last_el = Signal(name=f"u{j}_last_el")
            m.d.comb += last_el.eq((li + 1 >= nl) & lastc)
            ln, smx = lns[j], smxs[j]
            m.d.comb += [
                ln.i_stream.payload.x.eq(ex),
                ln.i_stream.payload.gamma.eq(eg),
                ln.i_stream.payload.beta.eq(eb),
                ln.i_stream.payload.e.eq(ins.imm),
                ln.i_stream.payload.last.eq(last_el),
                smx.i_stream.payload.z.eq(ex),
                smx.i_stream.payload.c.eq(ins.imm),
                smx.i_stream.payload.last.eq(last_el),
                ln.i_stream.valid.eq(full & is_ln),
                smx.i_stream.valid.eq(full & ~is_ln),
            ]
            with m.If(full & Mux(is_ln, ln.i_stream.ready, smx.i_stream.ready)):
                m.d.sync += li.eq(li + 1)
                with m.If(li + 1 >= nl):
                    m.d.sync += [full.eq(0), li.eq(0)]
            ibuf.append((xs, gs, bs, full, li, nl, lastc))

        # ---- per-unit deserializers --------------------------------------------------------------
        obuf = []  # per unit: (y lanes, full, lane, chunk of the row)
        for j in range(R):
            ys = [Signal(signed(p.dw), name=f"u{j}_y{i}") for i in range(P)]
            full = Signal(name=f"u{j}_out_full")
            li = Signal(range(P + 1), name=f"u{j}_out_lane")
            oc = Signal(aw, name=f"u{j}_out_chunk")
            onl = chunk_lanes(oc)
            ln, smx = lns[j], smxs[j]
            ovalid = Signal(name=f"u{j}_ovalid")
            oy = Signal(signed(p.dw), name=f"u{j}_oy")
            m.d.comb += [
                ln.o_stream.ready.eq(~full & is_ln),
                smx.o_stream.ready.eq(~full & ~is_ln),
                ovalid.eq(Mux(is_ln, ln.o_stream.valid, smx.o_stream.valid)),
                oy.eq(Mux(is_ln, ln.o_stream.payload.y, smx.o_stream.payload.p)),
            ]
            with m.If(ovalid & ~full):
                with m.Switch(li):
                    for i in range(P):
                        with m.Case(i):
                            m.d.sync += ys[i].eq(oy)
                m.d.sync += li.eq(li + 1)
                with m.If(li + 1 >= onl):
                    m.d.sync += [full.eq(1), li.eq(0)]
            obuf.append((ys, full, li, oc))

        # ---- feeder ------------------------------------------------------------------------------
        n = Signal(aw)
        rb = Signal(aw)  # n·nch
        c = Signal(aw)
        nl = chunk_lanes(c)
        fu = Signal(range(R))  # row unit the next row goes to
        fu_free = Signal()  # its input buffer is empty
        changed = Signal()
        s1 = Signal()
        s1_a = Signal(aw)
        m.d.sync += s1.eq(0)
        # pass A: X += ΔU, or with ``running`` X = S (S is the running input itself); the row
        # changed where ΔU ≠ 0, or S ≠ X
        acc = [
            Mux(ins.running, lane(self.d_rdb.data, i, p.dw),
                lane(self.d_rd.data, i, p.dw) + lane(self.d_rdb.data, i, p.dw))[: p.dw]
            for i in range(P)
        ]
        nz = Signal()
        m.d.comb += nz.eq(Mux(ins.running, self.d_rdb.data != self.d_rd.data, self.d_rdb.data != 0))
        for j in range(R):
            with m.If(fu == j):
                m.d.comb += fu_free.eq(~ibuf[j][3])

        # ---- collector ---------------------------------------------------------------------------
        cu = Signal(range(R))  # row unit the queue's head row comes from
        c2 = Signal(aw)
        yr = [Signal(signed(p.dw), name=f"y{i}") for i in range(P)]
        cu_full = Signal()
        for j in range(R):
            with m.If(cu == j):
                m.d.comb += cu_full.eq(obuf[j][1])
                m.d.comb += [yr[i].eq(obuf[j][0][i]) for i in range(P)]
        crb = queue.r_data  # the row being written back
        wb_wait = Signal()  # collector has a chunk to write back and waits for the ports
        wb_busy = Signal()  # collector owns the D ports this cycle
        feeder_on_ports = Signal()  # feeder reads or writes D this cycle
        feeder_may_start = Signal()  # feeder may enter a state that uses the ports
        m.d.comb += feeder_may_start.eq(~wb_wait & ~wb_busy)

        with m.FSM(name="collector"):
            with m.State("WAIT_ROW"):
                with m.If(queue.r_rdy & cu_full):
                    m.next = "WB_WAIT"
            with m.State("WB_WAIT"):
                m.d.comb += wb_wait.eq(1)
                with m.If(~feeder_on_ports):
                    m.next = "WB_READ"
            with m.State("WB_READ"):
                m.d.comb += [wb_busy.eq(1), self.d_rdb.addr.eq(ins.ybase + crb + c2), self.d_rdb.en.eq(1)]
                m.next = "WB_DELTA"
            with m.State("WB_DELTA"):
                m.d.comb += wb_busy.eq(1)
                delta = [(yr[i] - lane(self.d_rdb.data, i, p.dw))[: p.dw] for i in range(P)]
                m.d.comb += [
                    self.d_wr.addr.eq(ins.obase + crb + c2),
                    self.d_wr.en.eq(1),
                    self.d_wr.data.eq(pack(delta, p.dw)),
                ]
                m.next = "WB_STORE"
            with m.State("WB_STORE"):
                m.d.comb += [
                    wb_busy.eq(1),
                    self.d_wr.addr.eq(ins.ybase + crb + c2),
                    self.d_wr.en.eq(1),
                    self.d_wr.data.eq(pack(yr, p.dw)),
                ]
                last_chunk = c2 + 1 >= ins.nch
                for j in range(R):
                    ys, full, _li, oc = obuf[j]
                    with m.If(cu == j):
                        # padding lanes of the next chunk must read 0
                        m.d.sync += [full.eq(0), oc.eq(Mux(last_chunk, 0, oc + 1))] + [y.eq(0) for y in ys]
                with m.If(last_chunk):
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += [c2.eq(0), cu.eq(Mux(cu + 1 >= R, 0, cu + 1))]
                with m.Else():
                    m.d.sync += c2.eq(c2 + 1)
                m.next = "WAIT_ROW"

        # pass A write stage (the feeder's only write)
        with m.If(s1):
            m.d.comb += [self.d_wr.addr.eq(s1_a), self.d_wr.en.eq(1), self.d_wr.data.eq(pack(acc, p.dw))]
            with m.If(nz):
                m.d.sync += changed.eq(1)
        m.d.comb += queue.w_data.eq(rb)

        nl0 = chunk_lanes(0)

        def latch(j: int, xs_src, lanes, last_chunk) -> list:
            """Statements that fill unit ``j``'s input buffer with one chunk of ``lanes`` ``x`` lanes
            and the ``Γ``, ``B`` lanes read from ``Q`` in the previous cycle."""
            xs, gs, bs, full, li, lanes_, lastc = ibuf[j]
            out = [full.eq(1), li.eq(0), lanes_.eq(lanes), lastc.eq(last_chunk)]
            for i in range(P):
                out += [
                    xs[i].eq(xs_src[i]),
                    gs[i].eq(lane(self.q_rd.data, i, p.pw)),
                    bs[i].eq(lane(self.q_rd2.data, i, p.pw)),
                ]
            return out

        def issue_a(row, chunk) -> None:
            """Pass A reads of chunk ``chunk`` of the row at offset ``row``: X (port A), ΔU or S
            (port B), and ``Γ``, ``B``; its write follows in the next cycle. Γ and B are read with
            it, so a one-chunk row that must be recomputed goes to its unit from the pass-A value
            without reading X again."""
            m.d.comb += [
                feeder_on_ports.eq(1),
                self.d_rd.addr.eq(ins.xbase + row + chunk),
                self.d_rd.en.eq(1),
                self.d_rdb.addr.eq(ins.sbase + row + chunk),
                self.d_rdb.en.eq(1),
                self.q_rd.addr.eq(ins.pbase + chunk),
                self.q_rd.en.eq(1),
                self.q_rd2.addr.eq(ins.bbase + chunk),
                self.q_rd2.en.eq(1),
            ]
            m.d.sync += [s1.eq(1), s1_a.eq(ins.xbase + row + chunk), c.eq(chunk + 1)]

        def next_row(overlap: bool = False):
            """Go on with row ``n + 1``; with ``overlap`` its first chunk is read in this cycle if the
            collector does not need the ports (one cycle per row that is not recomputed)."""
            m.d.sync += [n.eq(n + 1), rb.eq(rb + ins.nch), c.eq(0), changed.eq(0)]
            with m.If(n + 1 >= ins.nvec):
                m.next = "DRAIN"
            with m.Elif(overlap & feeder_may_start):
                issue_a(rb + ins.nch, 0)
                with m.If(ins.nch == 1):
                    m.next = "DECIDE"
                with m.Else():
                    m.next = "A"
            with m.Else():
                m.next = "A"

        with m.FSM(name="feeder"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [n.eq(0), rb.eq(0), self.count.eq(0), fu.eq(0), cu.eq(0)]
                    with m.If((ins.nvec == 0) | (ins.nch == 0)):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += [c.eq(0), changed.eq(0)]
                        m.next = "A"
            with m.State("A"):
                with m.If(feeder_may_start):
                    issue_a(rb, c)
                    with m.If(c + 1 >= ins.nch):
                        m.next = "DECIDE"
            with m.State("DECIDE"):
                # the last chunk's X + ΔU is written in this cycle; its ΔU decides the row
                m.d.comb += feeder_on_ports.eq(1)
                redo = changed | nz | self.t_zero
                with m.If(~redo):
                    next_row(overlap=True)
                with m.Elif((ins.nch == 1) & queue.w_rdy & fu_free):
                    m.d.comb += queue.w_en.eq(1)
                    m.d.sync += [self.count.eq(self.count + 1), fu.eq(Mux(fu + 1 >= R, 0, fu + 1))]
                    for j in range(R):
                        with m.If(fu == j):
                            m.d.sync += latch(j, acc, nl0, 1)
                    next_row(overlap=True)
                with m.Else():
                    m.d.sync += c.eq(0)
                    m.next = "B_WAIT"
            with m.State("B_WAIT"):
                with m.If(queue.w_rdy & feeder_may_start & fu_free):
                    m.d.comb += queue.w_en.eq(1)
                    m.d.sync += self.count.eq(self.count + 1)
                    m.next = "B_READ"
            with m.State("B_READ"):
                m.d.comb += [
                    feeder_on_ports.eq(1),
                    self.d_rd.addr.eq(ins.xbase + rb + c),
                    self.d_rd.en.eq(1),
                    self.q_rd.addr.eq(ins.pbase + c),
                    self.q_rd.en.eq(1),
                    self.q_rd2.addr.eq(ins.bbase + c),
                    self.q_rd2.en.eq(1),
                ]
                m.next = "B_LATCH"
            with m.State("B_LATCH"):
                xs_rd = [lane(self.d_rd.data, i, p.dw) for i in range(P)]
                for j in range(R):
                    with m.If(fu == j):
                        m.d.sync += latch(j, xs_rd, nl, c + 1 >= ins.nch)
                with m.If(c + 1 >= ins.nch):
                    m.d.sync += fu.eq(Mux(fu + 1 >= R, 0, fu + 1))
                    next_row()
                with m.Else():
                    m.d.sync += c.eq(c + 1)
                    m.next = "B_NEXT"
            with m.State("B_NEXT"):
                # the row's next chunk waits for the unit to take the last one
                with m.If(feeder_may_start & fu_free):
                    m.next = "B_READ"
            with m.State("DRAIN"):
                with m.If(~queue.r_rdy):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
