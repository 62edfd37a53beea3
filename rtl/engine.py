"""Event-driven spike-addition engine (SPEC §3 AW linear, §11): one weight row per spike event."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.widths import signed_bits
from ._util import ceil_div, check_int, pack_lanes

__all__ = ["SpikeAdditionEngine", "required_acc_width"]

WEIGHT_BITS = 8


def required_acc_width(weights, bias=None) -> int:
    """Signed width holding any per-step current of an AW layer: ``max_c Σ_j |W_jc| + |b_c|``.

    ``weights`` has shape ``(n_in, n_out)`` (one row per input); every input spikes at most once
    (±1) per step, and the bias is added on the first step only.
    """
    w = np.abs(np.asarray(weights, dtype=np.int64)).sum(axis=0)
    if bias is not None:
        w = w + np.abs(np.asarray(bias, dtype=np.int64))
    m = int(w.max()) if w.size else 0
    return signed_bits(-m, m)


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
        ent = range(max(E + 1, 2))
        eaddr = range(max(E, 2))
        block = {"ram_style": "block", "rom_style": "block"}

        m.submodules.wrom = wrom = Memory(shape=unsigned(w_l.size), depth=max(self.n_in * C, 2),
                                          init=self.weight_init())
        w_rd = wrom.read_port(domain="sync")
        m.submodules.brom = brom = Memory(shape=unsigned(acc_l.size), depth=max(C, 2),
                                          init=self.bias_init(), attrs=block)
        b_rd = brom.read_port(domain="sync")
        banks = []
        for k in range(2):
            mem = Memory(shape=unsigned(acc_l.size), depth=max(E, 2), init=[], attrs=block)
            m.submodules[f"acc{k}"] = mem
            banks.append((mem.write_port(), mem.read_port(domain="sync")))

        # ---- state --------------------------------------------------------------------------
        clearing = Signal(init=1)
        clr_a = Signal(ent)
        clr_c = Signal(range(max(C, 2)))
        clr_w1, clr_w2 = Signal(), Signal()
        clr_a1, clr_a2 = Signal(eaddr), Signal(eaddr)
        bias_reg = Signal(acc_l)
        acc_bank = Signal()
        # S0: current event
        ev_valid = Signal()
        ev_eos = Signal()
        ev_neg = Signal()
        ev_chunk = Signal(range(max(C, 2)))
        ev_waddr = Signal(range(max(self.n_in * C, 2)))
        ev_aaddr = Signal(eaddr)
        # accumulate pipeline, one (event, chunk) item per cycle: B (RAM reads issued last cycle,
        # outputs valid), C (RAM outputs registered), U (signed operand and accumulator value
        # registered), W (sum registered, written back); W2, W3 keep the two previous sums
        b_valid, b_neg, b_bank, b_addr = Signal(), Signal(), Signal(), Signal(eaddr)
        c_valid, c_neg, c_bank, c_addr = Signal(), Signal(), Signal(), Signal(eaddr)
        u_valid, u_bank, u_addr, u_fwd = Signal(), Signal(), Signal(eaddr), Signal()
        w_valid, w_bank, w_addr = Signal(), Signal(), Signal(eaddr)
        r_w = Signal(w_l)
        r_a = [Signal(acc_l, name=f"r_a{k}") for k in range(2)]
        u_op = Signal(op_l)
        u_acc = Signal(acc_l)
        w_sum = Signal(acc_l)
        hist = [(Signal(name=f"w{k}_valid"), Signal(name=f"w{k}_bank"),
                 Signal(eaddr, name=f"w{k}_addr"), Signal(acc_l, name=f"w{k}_sum"))
                for k in (2, 3)]
        # readout: RAM output (r), its register (q), output register (o); elastic under
        # back-pressure (the RAM read enable and the register enables hold the data)
        ro_pending, ro_active, ro_bank = Signal(), Signal(), Signal()
        ro_ptr = Signal(ent)
        r_valid, q_valid, o_valid = Signal(), Signal(), Signal()
        o_data = Signal(acc_l)
        z_en = Signal()
        z_addr = Signal(eaddr)

        # ---- S0: event sequencer --------------------------------------------------------------
        issue = Signal()
        last_chunk = ev_chunk == C - 1
        swap = Signal()
        ro_free = ~ro_pending & ~ro_active & ~r_valid & ~q_valid
        m.d.comb += [
            issue.eq(ev_valid & ~ev_eos),
            swap.eq(ev_valid & ev_eos & ro_free),
            self.i_stream.ready.eq(~clearing & ~self.clear &
                                   (~ev_valid | (issue & last_chunk) | swap)),
            self.busy.eq(clearing),
            w_rd.addr.eq(ev_waddr),
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

        # ---- accumulate pipeline --------------------------------------------------------------
        m.d.sync += [
            b_valid.eq(issue), b_neg.eq(ev_neg), b_bank.eq(acc_bank), b_addr.eq(ev_aaddr),
            c_valid.eq(b_valid), c_neg.eq(b_neg), c_bank.eq(b_bank), c_addr.eq(b_addr),
            r_w.eq(w_rd.data),
            u_valid.eq(c_valid), u_bank.eq(c_bank), u_addr.eq(c_addr),
            w_valid.eq(u_valid), w_bank.eq(u_bank), w_addr.eq(u_addr),
            hist[0][0].eq(w_valid), hist[0][1].eq(w_bank), hist[0][2].eq(w_addr),
            hist[0][3].eq(w_sum),
            hist[1][0].eq(hist[0][0]), hist[1][1].eq(hist[0][1]), hist[1][2].eq(hist[0][2]),
            hist[1][3].eq(hist[0][3]),
        ]
        ro_busy = ro_active | r_valid | q_valid
        adv_o = ~o_valid | self.o_stream.ready
        adv_q = ~q_valid | adv_o
        adv_r = ~r_valid | adv_q
        for k, (_, rd) in enumerate(banks):
            with m.If(~(ro_busy & (ro_bank == k)) | adv_q):
                m.d.sync += r_a[k].eq(rd.data)      # RAM output register, no logic before it
        # C: the sign is applied one stage before the adder (one adder per lane)
        for lane in range(P):
            m.d.sync += u_op[lane].eq(Mux(c_neg, -r_w[lane], r_w[lane]))
        # forwarding. Item k reads its word at the end of cycle k and item k-d writes its sum at
        # the end of cycle k-d+4: for d <= 4 the read is stale. d = 2, 3, 4: the newer sum is in
        # W, W2, W3 while item k is in C -> select it into U (newest first); d = 1: item k-1's
        # sum is in W while item k adds -> select W's sum at the adder input (u_fwd).
        fresh = Mux(c_bank, r_a[1], r_a[0])
        for valid, bank, addr, val in reversed([(w_valid, w_bank, w_addr, w_sum)] + hist):
            fresh = Mux(valid & (bank == c_bank) & (addr == c_addr), val, fresh)
        m.d.sync += [u_acc.eq(fresh),
                     u_fwd.eq(u_valid & (u_bank == c_bank) & (u_addr == c_addr))]
        acc_in = acc_l(Mux(u_fwd, w_sum, u_acc))
        for lane in range(P):
            m.d.sync += w_sum[lane].eq(acc_in[lane] + u_op[lane])

        # ---- readout ------------------------------------------------------------------------
        ro_issue = Signal()
        drained = ~((b_valid & (b_bank == ro_bank)) | (c_valid & (c_bank == ro_bank)) |
                    (u_valid & (u_bank == ro_bank)) | (w_valid & (w_bank == ro_bank)))
        m.d.comb += ro_issue.eq(ro_active & adv_r & (ro_ptr < E))
        with m.If(ro_pending & drained):
            m.d.sync += [ro_pending.eq(0), ro_active.eq(1), ro_ptr.eq(0)]
        with m.If(ro_issue):
            m.d.sync += ro_ptr.eq(ro_ptr + 1)
        with m.If(ro_active & (ro_ptr == E)):
            m.d.sync += ro_active.eq(0)
        with m.If(adv_r):
            m.d.sync += r_valid.eq(ro_issue)
        with m.If(adv_q):
            m.d.sync += q_valid.eq(r_valid)
        with m.If(adv_o):
            m.d.sync += [o_valid.eq(q_valid), o_data.eq(Mux(ro_bank, r_a[1], r_a[0]))]
        m.d.sync += [z_en.eq(ro_issue), z_addr.eq(ro_ptr)]
        m.d.comb += [self.o_stream.valid.eq(o_valid), self.o_stream.payload.eq(o_data)]

        for k, (wr, rd) in enumerate(banks):
            with m.If(ro_busy & (ro_bank == k)):
                m.d.comb += [rd.addr.eq(ro_ptr), rd.en.eq(adv_r)]
            with m.Else():
                m.d.comb += rd.addr.eq(ev_aaddr)
            with m.If(clearing):
                m.d.comb += [wr.addr.eq(clr_a2), wr.en.eq(clr_w2),
                             wr.data.eq(bias_reg if k == 0 else 0)]
            with m.Elif(w_valid & (w_bank == k)):
                m.d.comb += [wr.addr.eq(w_addr), wr.data.eq(w_sum), wr.en.eq(1)]
            with m.Elif(z_en & (ro_bank == k)):
                m.d.comb += [wr.addr.eq(z_addr), wr.data.eq(0), wr.en.eq(1)]

        # ---- clear pass (bias into bank 0, zeros into bank 1), bias ROM output registered -----
        m.d.comb += b_rd.addr.eq(clr_c)
        m.d.sync += [bias_reg.eq(b_rd.data), clr_w2.eq(clr_w1), clr_a2.eq(clr_a1)]
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clr_a.eq(0), clr_c.eq(0), clr_w1.eq(0), clr_w2.eq(0)]
        with m.Elif(clearing):
            m.d.sync += [clr_w1.eq(clr_a < E), clr_a1.eq(clr_a)]
            with m.If(clr_a < E):
                m.d.sync += [clr_a.eq(clr_a + 1), clr_c.eq(Mux(clr_c == C - 1, 0, clr_c + 1))]
            with m.Elif(~clr_w1 & ~clr_w2):
                m.d.sync += clearing.eq(0)
        with m.If(self.clear | clearing):
            m.d.sync += [acc_bank.eq(0), ev_valid.eq(0), b_valid.eq(0), c_valid.eq(0),
                         u_valid.eq(0), w_valid.eq(0), hist[0][0].eq(0), hist[1][0].eq(0),
                         ro_pending.eq(0), ro_active.eq(0), r_valid.eq(0), q_valid.eq(0),
                         o_valid.eq(0), z_en.eq(0)]
        return m


def _synth_engine(p: dict) -> SpikeAdditionEngine:
    """Synthesis block: random int8 weights ``n_in x n_out`` (seeded), bias, ``n_vectors``."""
    rng = np.random.default_rng(int(p.get("seed", 1)))
    n_in, n_out = int(p.get("n_in", 64)), int(p.get("n_out", 192))
    w = rng.integers(-128, 128, size=(n_in, n_out))
    b = rng.integers(-1000, 1001, size=n_out)
    return SpikeAdditionEngine(w, b, lanes=int(p.get("lanes", 64)),
                               acc_width=int(p.get("acc_width", required_acc_width(w, b))),
                               n_vectors=int(p.get("n_vectors", 17)))


#: picked up by ``equispike synth`` (rtl/synth.py): name -> (factory, defaults, lane sweep)
SYNTH_BLOCKS = {
    "engine": (_synth_engine, {"lanes": 64, "n_in": 64, "n_out": 192, "n_vectors": 17},
               [{"lanes": 16}, {"lanes": 32}, {"lanes": 64}]),
}
