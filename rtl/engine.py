"""Event-driven spike-addition engine (SPEC §3 AW linear, §11): one weight row per spike event."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._util import ceil_div, check_int, pack_lanes

__all__ = ["SpikeAdditionEngine", "required_acc_width"]

WEIGHT_BITS = 8


def _signed_bits(lo: int, hi: int) -> int:
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def required_acc_width(weights, bias=None) -> int:
    """Signed width holding any per-step current of an AW layer: ``max_c Σ_j |W_jc| + |b_c|``.

    ``weights`` has shape ``(n_in, n_out)`` (one row per input); every input spikes at most once
    (±1) per step, and the bias is added on the first step only.
    """
    w = np.abs(np.asarray(weights, dtype=np.int64)).sum(axis=0)
    if bias is not None:
        w = w + np.abs(np.asarray(bias, dtype=np.int64))
    m = int(w.max()) if w.size else 0
    return _signed_bits(-m, m)


class SpikeAdditionEngine(wiring.Component):
    """Spike-addition engine for an AW linear layer: ``I_c(t) = Σ_j W_jc · s_j(t) (+ b_c at t=0)``.

    What it computes
    ----------------
    For each of ``n_vectors`` independent input vectors (e.g. tokens) it accumulates, over one time
    step, the rows ``W[j, :]`` of the int8 matrix ``W`` (shape ``n_in × n_out``) of every spike
    event ``(vector, index=j, sign)``: ``+W[j]`` for a positive spike, ``-W[j]`` for a negative
    one. An event with ``eos = 1`` (index/sign ignored) ends the step: the engine then streams the
    step's currents, ``n_vectors × chunks`` beats of ``lanes`` signed lanes (vector-major, then
    chunk ``c`` = outputs ``c·P .. c·P+P-1``; lanes past ``n_out`` are 0) with
    ``chunks = ceil(n_out / lanes)``, and clears them. The integer bias ``b`` is added on the
    first step after ``clear``/reset only.

    Architecture, latency, throughput
    ---------------------------------
    * Weights in a ROM of ``n_in · chunks`` words of ``lanes`` int8 (initialised at generation
      time); row ``j`` chunk ``c`` is word ``j·chunks + c``.
    * Two accumulator banks (``n_vectors · chunks`` words of ``lanes × acc_width``): one
      accumulates step ``t`` while the other streams out (and zeroes) step ``t-1``, so readout is
      hidden behind accumulation.
    * Accumulate pipeline, one (event, chunk) per cycle: S0 issues the weight read; S1 applies
      the sign to the operand (``±w``, registered) and issues the accumulator read; S2 adds (one
      adder per lane) and writes back. The accumulator read port is transparent to the write port,
      so back-to-back updates of one word are exact without stalls.
    * An event costs ``chunks`` cycles; the end-of-step marker one cycle, plus a wait if the
      previous step's readout has not finished. The readout streams one beat per cycle under
      back-pressure (a registered memory read holds the beat while ``ready`` is low). Ideal
      cycles of a step: ``events × chunks``.
    * ``clear`` (strobe) and reset run a clear pass of ``n_vectors · chunks + 1`` cycles that loads
      the bias into the first step's bank and zeroes the other one, dropping anything in flight
      (``busy`` high, ``i_stream.ready`` low).

    Parameters
    ----------
    weights : array (n_in, n_out) of int
        int8 weights, row ``j`` = weights from input ``j`` to every output.
    bias : array (n_out,) of int, optional
        Integer bias, added on the first step of an inference.
    lanes : int
        Accumulator lanes ``P`` (1..256).
    acc_width : int
        Signed accumulator/current width (2..48). Must be at least
        :func:`required_acc_width` of the weights and bias (per-step worst case; the width
        analysis ``model.widths`` gives the same bound as ``<site>.current``), else ValueError:
        overflow is impossible by construction.
    n_vectors : int
        Independent input vectors per step (tokens), >= 1.
    """

    def __init__(self, weights, bias=None, *, lanes: int, acc_width: int, n_vectors: int = 1):
        w = np.asarray(weights)
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise ValueError(f"weights must be a non-empty 2-D (n_in, n_out) array, got shape "
                             f"{w.shape}")
        if w.dtype.kind not in "iu":
            raise ValueError(f"weights must be integers, got dtype {w.dtype}")
        if w.size and (w.min() < -128 or w.max() > 127):
            raise ValueError(f"weights must be int8 in [-128, 127], got [{w.min()}, {w.max()}]")
        self.n_in, self.n_out = (int(x) for x in w.shape)
        if bias is None:
            b = np.zeros(self.n_out, dtype=np.int64)
        else:
            b = np.asarray(bias)
            if b.dtype.kind not in "iu" or b.shape != (self.n_out,):
                raise ValueError(f"bias must be an integer array of shape ({self.n_out},), got "
                                 f"{b.dtype} {b.shape}")
        self.lanes = check_int("lanes", lanes, 1, 256)
        self.acc_width = check_int("acc_width", acc_width, 2, 48)
        self.n_vectors = check_int("n_vectors", n_vectors, 1, 1 << 20)
        need = required_acc_width(w, b)
        if self.acc_width < need:
            raise ValueError(f"acc_width {acc_width} is too narrow: the worst-case step current "
                             f"of these weights and bias needs {need} bits")
        self.weights = w.astype(np.int64)
        self.bias = b.astype(np.int64)
        self.chunks = ceil_div(self.n_out, self.lanes)
        self.entries = self.n_vectors * self.chunks

        self.event_layout = data.StructLayout({
            "index": unsigned(max(1, (self.n_in - 1).bit_length())),
            "vector": unsigned(max(1, (self.n_vectors - 1).bit_length())),
            "neg": 1,
            "eos": 1,
        })
        self.current_layout = data.ArrayLayout(signed(self.acc_width), self.lanes)
        super().__init__({
            "i_stream": In(stream.Signature(self.event_layout)),
            "o_stream": Out(stream.Signature(self.current_layout)),
            "clear": In(1),
            "busy": Out(1),
        })

    # -- memory images ------------------------------------------------------------------------
    def _padded(self, vec) -> np.ndarray:
        out = np.zeros(self.chunks * self.lanes, dtype=np.int64)
        out[: len(vec)] = vec
        return out.reshape(self.chunks, self.lanes)

    def weight_init(self) -> list[int]:
        words = []
        for j in range(self.n_in):
            for chunk in self._padded(self.weights[j]):
                words.append(pack_lanes(chunk, WEIGHT_BITS))
        return words

    def bias_init(self) -> list[int]:
        return [pack_lanes(chunk, self.acc_width) for chunk in self._padded(self.bias)]

    def elaborate(self, platform):
        m = Module()
        P, C, E = self.lanes, self.chunks, self.entries
        acc_l = self.current_layout
        w_l = data.ArrayLayout(signed(WEIGHT_BITS), P)
        op_l = data.ArrayLayout(signed(WEIGHT_BITS + 1), P)

        m.submodules.wrom = wrom = Memory(shape=unsigned(w_l.size),
                                          depth=max(self.n_in * C, 2), init=self.weight_init())
        w_rd = wrom.read_port(domain="sync")
        m.submodules.brom = brom = Memory(shape=unsigned(acc_l.size), depth=max(C, 2),
                                          init=self.bias_init())
        b_rd = brom.read_port(domain="sync")
        banks = []
        for k in range(2):
            mem = Memory(shape=unsigned(acc_l.size), depth=max(E, 2), init=[])
            m.submodules[f"acc{k}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync", transparent_for=(wr,))
            banks.append((wr, rd))

        ent = range(max(E + 1, 2))
        # ---- state --------------------------------------------------------------------------
        clearing = Signal(init=1)
        clr_a = Signal(ent)
        clr_c = Signal(range(max(C, 2)))
        clr_w = Signal()
        clr_wa = Signal(ent)
        acc_bank = Signal()
        # S0: current event
        ev_valid = Signal()
        ev_eos = Signal()
        ev_neg = Signal()
        ev_chunk = Signal(range(max(C, 2)))
        ev_waddr = Signal(range(max(self.n_in * C, 2)))
        ev_aaddr = Signal(ent)
        # S1 / S2
        s1_valid, s1_neg, s1_bank = Signal(), Signal(), Signal()
        s1_aaddr = Signal(ent)
        s2_valid, s2_bank = Signal(), Signal()
        s2_aaddr = Signal(ent)
        s2_op = Signal(op_l)
        # readout
        ro_pending, ro_active, ro_bank = Signal(), Signal(), Signal()
        ro_ptr = Signal(ent)
        out_valid = Signal()
        z_en = Signal()
        z_addr = Signal(ent)

        # ---- S0: event sequencer --------------------------------------------------------------
        issue = Signal()
        last_chunk = ev_chunk == C - 1
        swap = Signal()
        ro_free = ~ro_pending & ~ro_active
        m.d.comb += [
            issue.eq(ev_valid & ~ev_eos),
            swap.eq(ev_valid & ev_eos & ro_free),
            self.i_stream.ready.eq(~clearing & ~self.clear &
                                   (~ev_valid | (issue & last_chunk) | swap)),
            self.busy.eq(clearing),
            w_rd.addr.eq(ev_waddr),
            w_rd.en.eq(issue),
        ]
        p = self.i_stream.payload
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [
                ev_valid.eq(1), ev_eos.eq(p.eos), ev_neg.eq(p.neg), ev_chunk.eq(0),
                ev_waddr.eq(p.index * C), ev_aaddr.eq(p.vector * C),
            ]
        with m.Elif(issue & last_chunk | swap):
            m.d.sync += ev_valid.eq(0)
        with m.If(issue & ~last_chunk):
            m.d.sync += [ev_chunk.eq(ev_chunk + 1), ev_waddr.eq(ev_waddr + 1),
                         ev_aaddr.eq(ev_aaddr + 1)]
        with m.If(swap):
            m.d.sync += [ro_pending.eq(1), ro_bank.eq(acc_bank), acc_bank.eq(~acc_bank)]
        m.d.sync += [s1_valid.eq(issue), s1_neg.eq(ev_neg), s1_aaddr.eq(ev_aaddr),
                     s1_bank.eq(acc_bank)]

        # ---- S1: sign the operand (one stage before the adder), read the accumulator ---------
        w_row = w_l(w_rd.data)
        for lane in range(P):
            m.d.sync += s2_op[lane].eq(Mux(s1_neg, -w_row[lane], w_row[lane]))
        m.d.sync += [s2_valid.eq(s1_valid), s2_aaddr.eq(s1_aaddr), s2_bank.eq(s1_bank)]

        # ---- S2: add and write back ---------------------------------------------------------
        sums = Signal(acc_l)
        # ---- readout --------------------------------------------------------------------------
        ro_adv = ~out_valid | self.o_stream.ready
        ro_issue = Signal()
        drained = ~(s1_valid & (s1_bank == ro_bank)) & ~(s2_valid & (s2_bank == ro_bank))
        m.d.comb += ro_issue.eq(ro_active & ro_adv & (ro_ptr < E))
        with m.If(ro_pending & drained):
            m.d.sync += [ro_pending.eq(0), ro_active.eq(1), ro_ptr.eq(0)]
        with m.If(ro_issue):
            m.d.sync += [ro_ptr.eq(ro_ptr + 1), out_valid.eq(1)]
        with m.Elif(ro_adv):
            m.d.sync += out_valid.eq(0)
            with m.If(ro_active & (ro_ptr == E)):
                m.d.sync += ro_active.eq(0)
        m.d.sync += [z_en.eq(ro_issue), z_addr.eq(ro_ptr)]
        rd_data = Mux(ro_bank, banks[1][1].data, banks[0][1].data)
        m.d.comb += [self.o_stream.valid.eq(out_valid), self.o_stream.payload.eq(rd_data)]

        for k, (wr, rd) in enumerate(banks):
            acc_in = acc_l(rd.data)
            if k == 0:
                for lane in range(P):
                    m.d.comb += sums[lane].eq(Mux(s2_bank, acc_l(banks[1][1].data)[lane],
                                                  acc_in[lane]) + s2_op[lane])
            with m.If(ro_active & (ro_bank == k)):
                m.d.comb += [rd.addr.eq(ro_ptr), rd.en.eq(ro_issue)]
            with m.Else():
                m.d.comb += [rd.addr.eq(s1_aaddr), rd.en.eq(s1_valid & (s1_bank == k))]
            with m.If(clearing):
                m.d.comb += [wr.addr.eq(clr_wa), wr.en.eq(clr_w),
                             wr.data.eq(b_rd.data if k == 0 else 0)]
            with m.Elif(s2_valid & (s2_bank == k)):
                m.d.comb += [wr.addr.eq(s2_aaddr), wr.data.eq(sums), wr.en.eq(1)]
            with m.Elif(z_en & (ro_bank == k)):
                m.d.comb += [wr.addr.eq(z_addr), wr.data.eq(0), wr.en.eq(1)]

        # ---- clear pass (bias into bank 0, zeros into bank 1) --------------------------------
        m.d.comb += [b_rd.addr.eq(clr_c), b_rd.en.eq(1)]
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clr_a.eq(0), clr_c.eq(0), clr_w.eq(0)]
        with m.Elif(clearing):
            m.d.sync += [clr_w.eq(clr_a < E), clr_wa.eq(clr_a)]
            with m.If(clr_a < E):
                m.d.sync += [clr_a.eq(clr_a + 1), clr_c.eq(Mux(clr_c == C - 1, 0, clr_c + 1))]
            with m.Elif(~clr_w):
                m.d.sync += clearing.eq(0)
        with m.If(self.clear | clearing):
            m.d.sync += [acc_bank.eq(0), ev_valid.eq(0), s1_valid.eq(0), s2_valid.eq(0),
                         ro_pending.eq(0), ro_active.eq(0), out_valid.eq(0), z_en.eq(0)]
        return m
