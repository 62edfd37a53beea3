"""Spike-event encoding: rows of spikes (or image codes) in, one event per cycle out."""

from __future__ import annotations

from amaranth.hdl import C, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.isa import SRC_SCODES, SRC_SPIKES
from .ports import ReadPort, lane, log2_exact

__all__ = ["EventScanner", "event_layout"]


def event_layout(addr_width: int, iw: int) -> data.StructLayout:
    """An event: vector ``n``, channel ``j``, weight ``±2^shift`` (``neg`` for the minus sign)."""
    return data.StructLayout(
        {
            "n": unsigned(addr_width),
            "j": unsigned(addr_width),
            "neg": 1,
            "shift": unsigned(max(1, (iw - 1).bit_length())),
        }
    )


class EventScanner(wiring.Component):
    """Reads the source rows of an AW, transpose or SROW instruction and emits its events, one per cycle.

    For vectors ``n < nvec`` and chunks ``c0 ≤ c < c1`` it reads row ``sbase + n·sstride + c``;
    every lane whose channel ``j = c·P + l`` lies in ``[lo, hi)`` and whose value is nonzero gives
    events in lane order: a spike ``±1`` one event (``neg`` = its sign, ``shift = 0``), an image code
    one event per set bit ``b`` (``shift = b``; with ``src = SRC_SCODES`` the top bit of the
    ``iw``-bit code is negative). Without ``codes`` every nonzero lane is one event whatever its
    width (``src`` is ignored: the user reads the value, e.g. from the row it copies on ``load``).
    With ``masked`` a lane also needs its bit of ``mask``, which the user gives for the chunk
    ``chunk`` of the row being taken.

    Timing: the first row is read two cycles after ``start``; every row then costs one cycle per
    event (the next row is read while the current one emits) and events wait on
    ``o_stream.ready``. A row without events costs its read cycle only: it is dropped while the
    current row emits, so it adds a cycle only when no event is pending. ``done`` pulses in the
    cycle after the last event is taken (or the last row is found empty).

    Members
    -------
    start : In(1)
        Begin scanning with the configuration inputs below (held for the whole scan).
    nvec, sbase, sstride, c0, c1, lo, hi, src : In
        The instruction fields (:class:`~equispike.compiler.isa.Instr`).
    rd : Out(ReadPort)
        Row read port: spike rows (2-bit lanes) or image code rows (``iw``-bit lanes), chosen by the
        user from ``src``; ``rd.data`` must carry ``P`` lanes of ``iw`` bits with spikes sign-extended.
    o_stream : Out(stream.Signature(event_layout))
    done : Out(1)
    load : Out(1)
        The row on ``rd.data`` becomes the row whose events are emitted (from the next cycle).
    chunk : Out(addr_width)
        The chunk ``c`` of the row on ``rd.data`` not yet taken.
    mask : In(lanes)
        With ``masked``: the lanes of ``chunk`` that may give events.
    hold : In(1)
        Keep the prefetched row untaken (e.g. while ``mask`` is not final).
    """

    def __init__(self, lanes: int, addr_width: int, iw: int, *, codes: bool = True, masked: bool = False):
        if not isinstance(codes, bool) or not isinstance(masked, bool):
            raise TypeError("codes and masked must be bools")
        self.lanes = lanes
        self.lg = log2_exact(lanes)
        self.aw = addr_width
        self.iw = max(2, iw)
        self.codes = codes
        self.masked = masked
        super().__init__(
            {
                "load": Out(1),
                "chunk": Out(addr_width),
                "hold": In(1),
                **({"mask": In(lanes)} if masked else {}),
                "start": In(1),
                "nvec": In(addr_width),
                "sbase": In(addr_width),
                "sstride": In(addr_width),
                "c0": In(addr_width),
                "c1": In(addr_width),
                "lo": In(addr_width),
                "hi": In(addr_width),
                "src": In(2),
                "rd": Out(ReadPort(addr_width, lanes * self.iw)),
                "o_stream": Out(stream.Signature(event_layout(addr_width, self.iw))),
                "done": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        P, iw, aw = self.lanes, self.iw, self.aw
        n = Signal(aw)
        c = Signal(aw)
        pw = iw if self.codes else 1
        pend = [Signal(pw, name=f"pend{i}") for i in range(P)]  # remaining bits per lane
        neg = [Signal(name=f"neg{i}") for i in range(P)]  # spike sign per lane
        spikes = Signal()
        m.d.comb += spikes.eq((self.src == SRC_SPIKES) if self.codes else 1)

        # lowest pending lane, and its lowest pending bit
        any_pend = Signal()
        sel = Signal(range(P))
        for i in reversed(range(P)):
            with m.If(pend[i] != 0):
                m.d.comb += [sel.eq(i), any_pend.eq(1)]
        sel_bits = Signal(pw)
        sel_neg = Signal()
        with m.Switch(sel):
            for i in range(P):
                with m.Case(i):
                    m.d.comb += [sel_bits.eq(pend[i]), sel_neg.eq(neg[i])]
        bit = Signal(range(iw))
        for b in reversed(range(pw)):
            with m.If(sel_bits[b]):
                m.d.comb += bit.eq(b)

        ev = self.o_stream.payload
        m.d.comb += [
            ev.n.eq(n),
            ev.j.eq((c << self.lg) | sel),
            ev.shift.eq(Mux(spikes, 0, bit)),
            ev.neg.eq(Mux(spikes, sel_neg, (self.src == SRC_SCODES) & (bit == iw - 1))),
        ]
        # The next row is read while the current one emits (the read port holds its data until the
        # next read), so a row costs one cycle per event and one cycle when it has none.
        pend_nz = Signal(P)
        m.d.comb += pend_nz.eq(Cat(*(pend[i] != 0 for i in range(P))))
        rest = Signal()  # events left after the one offered now
        m.d.comb += rest.eq(((pend_nz & (pend_nz - 1)) != 0) | ((sel_bits & (sel_bits - 1)) != 0))
        adv = Signal()  # the current row has no events left after this cycle
        m.d.comb += adv.eq(~any_pend | (self.o_stream.ready & ~rest))
        nn = Signal(aw)  # next row to read: vector, chunk, first row
        cn = Signal(aw)
        rbn = Signal(aw)
        exhausted = Signal()  # every row has been read
        pf = Signal()  # rd.data holds the row (n_p, c_p), read and not yet taken
        n_p = Signal(aw)
        c_p = Signal(aw)
        m.d.comb += self.chunk.eq(c_p)
        pf_events = Signal(P)  # the lanes of the prefetched row that give events
        for i in range(P):
            v = lane(self.rd.data, i, iw)
            ch = (c_p << self.lg) | i
            inside = (ch >= self.lo) & (ch < self.hi) & (v != 0)
            if self.masked:
                inside &= self.mask[i]
            m.d.comb += pf_events[i].eq(inside)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [nn.eq(0), cn.eq(self.c0), rbn.eq(self.sbase), exhausted.eq(0), pf.eq(0)]
                    m.d.sync += [p.eq(0) for p in pend]
                    with m.If((self.nvec == 0) | (self.c1 <= self.c0)):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.o_stream.valid.eq(any_pend)
                with m.If(any_pend & self.o_stream.ready):
                    with m.Switch(sel):
                        for i in range(P):
                            with m.Case(i):
                                m.d.sync += pend[i].eq(Mux(spikes, 0, pend[i] & ~(C(1, pw) << bit)[:pw]))
                # a prefetched row without events is dropped as soon as it arrives, while the
                # current row still emits: it costs a read cycle, not an emit cycle
                take = Signal()
                skip = Signal()
                ready_row = Signal()
                m.d.comb += [
                    ready_row.eq(pf & ~self.hold),
                    take.eq(adv & ready_row & pf_events.any()),
                    skip.eq(ready_row & ~pf_events.any()),
                ]
                with m.If(take):
                    # take the prefetched row (after the assignments above: they are moot)
                    m.d.comb += self.load.eq(1)
                    m.d.sync += [n.eq(n_p), c.eq(c_p)]
                    for i in range(P):
                        v = lane(self.rd.data, i, iw)
                        m.d.sync += [
                            pend[i].eq(Mux(pf_events[i], Mux(spikes, 1, v.as_unsigned()), 0)),
                            neg[i].eq(v < 0),
                        ]
                with m.If(take | skip):
                    m.d.sync += pf.eq(0)
                with m.If(adv & (~pf | skip) & exhausted):
                    m.next = "DONE"
                with m.If(~exhausted & (~pf | take | skip)):
                    m.d.comb += [self.rd.addr.eq(rbn + cn), self.rd.en.eq(1)]
                    m.d.sync += [pf.eq(1), n_p.eq(nn), c_p.eq(cn)]
                    with m.If(cn + 1 >= self.c1):
                        m.d.sync += cn.eq(self.c0)
                        with m.If(nn + 1 >= self.nvec):
                            m.d.sync += exhausted.eq(1)
                        with m.Else():
                            m.d.sync += [nn.eq(nn + 1), rbn.eq(rbn + self.sstride)]
                    with m.Else():
                        m.d.sync += cn.eq(cn + 1)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
