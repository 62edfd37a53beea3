"""Event-driven spike-addition engine (SPEC §3 AW linear, §11): one weight row per spike event."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import C as C_
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model.widths import signed_bits
from ._bram import RAM_TARGETS, RegisteredRAM
from ._carry import CARRY_TARGETS, fused_add
from ._util import ceil_div, check_int, pack_lanes

__all__ = ["SpikeAdditionEngine", "ZeroVectorExpander", "required_acc_width"]

WEIGHT_BITS = 8
# accumulate operand, per bit (rtl/_carry.py): the word read if kept, or the forwarded sum
# (0 unless forwarding): b = acc_i, c = keep, d = forwarded_i
_SEL_ACC = lambda b, c, d: (b & c) | d  # noqa: E731
#: Read-modify-write loop of an accumulator word, in items (cycles): an item issued less than
#: this many cycles after one that updates the same word is held back (hazard stall)
LOOP_DEPTH = 4


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
    step's currents vector-major, each vector as ``chunks = ceil(n_out / lanes)`` beats of
    ``lanes`` signed lanes (chunk ``c`` = outputs ``c·P .. c·P+P-1``; lanes past ``n_out`` are
    0), and clears them. The integer bias ``b`` is added on the first step after
    ``clear``/reset only.

    Readout protocol (``compact_zero_vectors``)
    -------------------------------------------
    * ``compact_zero_vectors=True`` (default): the payload is :attr:`readout_layout`,
      ``{lanes: current_layout, zero: 1}``. A vector that was *touched* in the step (at least
      one event of that vector, or -- first step after ``clear``/reset only -- a nonzero bias,
      which the clear pass loads into bank 0 for every vector) is sent as ``chunks`` beats with
      ``zero = 0``, as before; an untouched vector, whose currents are all 0, is sent as ONE
      beat with ``zero = 1`` and all lanes 0. A step thus costs ``touched · chunks +
      untouched`` beats (``n_vectors`` beats for a step without events). Note a touched vector
      whose events cancel is still sent in full (its lanes are 0 with ``zero = 0``).
      :class:`ZeroVectorExpander` turns the compact stream back into the dense one.
    * ``compact_zero_vectors=False``: the old protocol, payload :attr:`current_layout`, always
      ``n_vectors × chunks`` beats per step.

    Architecture, latency, throughput
    ---------------------------------
    * Weights in a ROM of ``n_in · chunks`` words of ``lanes`` int8 (initialised at generation
      time); row ``j`` chunk ``c`` is word ``j·chunks + c`` (shift-and-add address, no
      multiplier).
    * One accumulator RAM of ``2·n_vectors·chunks + chunks`` words of ``lanes × acc_width``:
      the bias (read-only), bank 0 and bank 1 (one accumulates step ``t`` while the other
      streams out step ``t-1``, so readout is hidden behind accumulation). It has one write port
      (the adders) and two read ports (accumulate, readout), which Yosys maps to two copies of
      the RAM: no bank multiplexers in front of the adders or the output (cost: each copy
      holds both banks, i.e. twice the accumulator bits of two separate banks; free while
      ``2·n_vectors·chunks + chunks <= 512``, the DP16KD depth at 36 bits). The RAMs carry
      ``no_rw_check``: no word is read in the cycle it is written, so Yosys adds no
      read/write-collision logic behind their outputs.
    * Per bank a 1-bit "touched this step" flag per word (block RAM): a word not yet touched
      in the step enters the adder as 0 (synchronous reset of the RAM output register) and
      reads out as 0 (reset of the output register), so readout writes no zeros; it clears
      the flags of the words it has read.
    * (compact readout) Per bank an ``n_vectors``-bit register of "vector touched this step"
      flags, set when an event's first item issues, loaded by the clear pass (bank 0: all ones
      if the bias has a nonzero element, else 0; bank 1: 0), and cleared when the bank's
      readout has issued its last read. The readout checks the flag of each vector before its
      first chunk: untouched -> one ``zero`` beat and a jump of ``chunks`` words.
    * Accumulate pipeline, one item (event, chunk) per cycle, 6 stages: S0 issues the item
      (hazard check) and reads the word's flag; A reads the weight (address registers per
      block-RAM column); B reads the accumulator word (likewise) and sets the flag; C: the
      weight leaves the ROM's output register and the sign is applied as ``w XOR s``; D: the
      word leaves the RAM's output register and one carry chain per lane adds
      ``(w XOR s) + s`` to the word (if touched, or a bias word), to 0 (untouched) or to the
      forwarded sum (below), the select inside the carry chain; E: the sum, registered, is
      written. A word is read 2 cycles after its item issues and written 5 cycles after:
      read-modify-write loop ``LOOP_DEPTH = 4``. An item whose word is updated by the item
      issued 3 cycles before it gets that item's sum forwarded (no stall); one updated by
      one of the 2 items just before it is held in S0 (hazard stall). Both only happen for two
      events of the same vector back to back: forwarding with 3 chunks per row, a stall with
      fewer (an event then costs 3 cycles instead of ``chunks``); with ``chunks >= 4``
      neither check is built.
    * An event costs ``chunks`` cycles (see stall above); the end-of-step marker one cycle,
      plus a wait if the previous step's readout has not finished. The readout starts when
      the step's items have left the pipeline (6 cycles), then streams one beat per cycle,
      latency 3 cycles from read to ``o_stream.valid``. Back-pressure never reaches the block
      RAMs: a beat that finds the output register full and not taken is dropped with the one
      behind it and read again (2 cycles lost per stall). Ideal cycles of a step: ``events × chunks``.
      The next step's end-of-step waits for this readout, so a step costs at least its
      readout beats: ``n_vectors × chunks`` with the dense protocol (a sparse step is then
      readout bound), ``touched · chunks + untouched <= events × chunks + n_vectors`` with
      the compact one.
    * ``clear`` (strobe) and reset run a clear pass of ``n_vectors · chunks + 5`` cycles: the
      bias words go down the accumulate pipeline into bank 0 (marking it touched) and bank 1's
      flags are cleared; anything in flight is dropped (``busy`` high, ``i_stream.ready``
      low).

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
    compact_zero_vectors : bool
        Compact readout (default True): one ``zero`` beat per untouched vector, see above.
        False keeps the dense ``n_vectors × chunks`` beats per step (payload
        :attr:`current_layout`).
    ram_target : {None, "generic", "ecp5"}
        Form of the weight and accumulator RAMs (:class:`~equispike.rtl._bram.RegisteredRAM`):
        ``None`` simulation (read/write collisions poisoned), ``"generic"`` inferred, ``"ecp5"``
        ``DP16KD`` read through their output registers.
    carry_target : {None, "generic", "ecp5"}
        Form of the accumulate adder (:func:`~equispike.rtl._carry.fused_add`): ``"ecp5"``
        selects read word / forwarded sum / 0 inside the ``CCU2C`` carry chain.
    """

    def __init__(self, weights, bias=None, *, lanes: int, acc_width: int, n_vectors: int = 1,
                 compact_zero_vectors: bool = True, ram_target: str | None = None,
                 carry_target: str | None = None):
        if ram_target not in RAM_TARGETS:
            raise ValueError(f"ram_target must be one of {RAM_TARGETS}, got {ram_target!r}")
        if carry_target not in CARRY_TARGETS:
            raise ValueError(f"carry_target must be one of {CARRY_TARGETS}, got {carry_target!r}")
        self.ram_target, self.carry_target = ram_target, carry_target
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
        self.compact = bool(compact_zero_vectors)
        #: payload of ``o_stream``: ``current_layout`` (dense) or ``{lanes, zero}`` (compact)
        self.readout_layout = (data.StructLayout({"lanes": self.current_layout, "zero": 1})
                               if self.compact else self.current_layout)
        super().__init__({
            "i_stream": In(stream.Signature(self.event_layout)),
            "o_stream": Out(stream.Signature(self.readout_layout)),
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

    def readout_beats(self, touched_vectors: int) -> int:
        """Beats of one step's readout with ``touched_vectors`` touched vectors."""
        if not self.compact:
            return self.entries
        return touched_vectors * self.chunks + (self.n_vectors - touched_vectors)

    def elaborate(self, platform):
        m = Module()
        P, C, E = self.lanes, self.chunks, self.entries
        W = self.acc_width
        acc_l = self.current_layout
        w_l = data.ArrayLayout(signed(WEIGHT_BITS), P)
        ent = range(max(E + 1, 2))
        eaddr = range(max(E, 2))
        maddr = range(2 * E + C)
        cidx = range(max(C, 2))
        # block RAMs read through their output registers (RegisteredRAM); the weight ROM and the
        # accumulate copy register their addresses per block-RAM column (addr_regs)
        tgt = self.ram_target
        m.submodules.wrom = wrom = RegisteredRAM(unsigned(w_l.size), max(self.n_in * C, 2),
                                                 init=self.weight_init(), target=tgt, addr_regs=True)
        # accumulators: bias = words 0..C-1 (loaded into bank 0 by the clear pass), bank 0 =
        # C..C+E-1, bank 1 = C+E..C+2E-1; one write (the adders) into two copies, one read by
        # the accumulate path and one by the readout (no bank multiplexers)
        acc_init = self.bias_init() + [0] * (2 * E)
        m.submodules.acc = acc = RegisteredRAM(unsigned(acc_l.size), 2 * E + C, init=acc_init,
                                               target=tgt, addr_regs=True)
        m.submodules.acc_ro = acc_ro = RegisteredRAM(unsigned(acc_l.size), 2 * E + C,
                                                     init=acc_init, target=tgt)
        # per-bank "touched this step" flags (a word not touched reads as 0: no zeroing writes)
        flags = []
        for k in range(2):
            ram = RegisteredRAM(unsigned(1), max(E, 2), target=tgt)
            m.submodules[f"flag{k}"] = ram
            flags.append(ram)

        # ---- state --------------------------------------------------------------------------
        clearing = Signal(init=1)
        clr_run = Signal(init=1)       # clear pass still issuing bias items (S0 counters)
        acc_bank = Signal()
        # S0: current event (addresses of its next chunk)
        ev_valid, ev_eos, ev_neg = Signal(), Signal(), Signal()
        V = self.n_vectors
        ev_vec = Signal(range(max(V, 2)))
        ev_chunk = Signal(cidx)
        ev_waddr = Signal(range(max(self.n_in * C, 2)))
        ev_aaddr = Signal(eaddr)
        # accumulate pipeline, one item (event chunk, or bias word in the clear pass) per cycle:
        # A: weight and flag reads issued; B: accumulator read issued (registered address),
        # flag set, weight registered; C: flag/accumulator registered, sign applied (XOR);
        # D: adder, written straight back
        a_valid, a_bank, a_neg, a_bias = Signal(), Signal(), Signal(), Signal()
        a_addr, a_chunk = Signal(eaddr), Signal(cidx)
        a_waddr = Signal.like(ev_waddr)
        b_valid, b_bank, b_neg, b_bias = Signal(), Signal(), Signal(), Signal()
        b_addr, b_wmaddr = Signal(eaddr), Signal(maddr)
        c_valid, c_bank, c_neg, c_bias = Signal(), Signal(), Signal(), Signal()
        c_maddr = Signal(maddr)
        d_valid, d_bank, d_maddr = Signal(), Signal(), Signal(maddr)
        e_valid, e_bank, e_maddr = Signal(), Signal(), Signal(maddr)
        a_fwd, b_fwd, c_fwd = Signal(), Signal(), Signal()
        c_addr = Signal(eaddr)
        r_w = w_l(wrom.r_data)          # weight, stage C (the ROM's output register)
        f_q = [ram.r_data for ram in flags]         # flag RAM output registers
        f_q2 = [Signal(name=f"f_q2_{k}") for k in range(2)]  # and once more (accumulate)
        r_a = acc_l(acc.r_data)         # accumulator word, stage D (the RAM's output register)
        d_keep = Signal()               # stage D: use the word read (touched or bias, not forwarded)
        g1 = Signal(acc_l, reset_less=True)  # the sum written one cycle ago ...
        g2 = Signal(acc_l, reset_less=True)  # ... and two: forwarded into D, else 0
        e_sum = Signal(acc_l, reset_less=True)  # stage E: the sum, written at the end of E
        u_op = Signal(w_l)
        u_cin = Signal()
        # readout: RAM output (r), its register (q), output register (o); elastic under
        # back-pressure (the RAM read enable and the register enables hold the data)
        ro_pending, ro_active, ro_bank = Signal(), Signal(), Signal()
        ro_ptr = Signal(ent)
        ro_mptr = Signal(maddr)
        r_valid, q_valid, o_valid = Signal(), Signal(), Signal()
        q_data = acc_l(acc_ro.r_data)   # readout: the RAM's output register
        o_data = Signal(acc_l)
        # compact readout: per-bank vector flags, readout vector/chunk counters, zero-beat flags
        compact = self.compact
        bias_touch = int(np.any(self.bias != 0))
        vflag = [Signal(V, name=f"vflag{k}", init=((1 << V) - 1) * bias_touch if k == 0 else 0)
                 for k in range(2)]
        ro_chunk = Signal(cidx)
        ro_zero = Signal()
        r_zero, q_zero, o_zero = Signal(), Signal(), Signal()
        z_en = Signal()
        z_addr = Signal(eaddr)

        # ---- S0: event sequencer, hazard stall ------------------------------------------------
        issue = Signal()
        hazard = Signal()
        last_chunk = ev_chunk == C - 1
        swap = Signal()
        # the readout is free (registered, one cycle late: the input handshake path stays short;
        # cleared by the swap that makes it busy)
        ro_free = Signal()
        m.d.sync += ro_free.eq(~ro_pending & ~ro_active & ~r_valid & ~q_valid & ~swap)
        m.d.comb += [
            # an item reads its word 2 cycles after issue and writes it 5 cycles after: the
            # word of an item issued 1 or 2 cycles earlier (now in A, B) is not written in time
            # (hazard stall); that of an item issued 3 cycles earlier (now in C) is written in
            # the cycle of the read: its sum is forwarded into D instead (no stall). With
            # >= 3 chunks per row the first never happens, with >= 4 neither
            hazard.eq((a_valid & (a_bank == acc_bank) & (a_addr == ev_aaddr)) |
                      (b_valid & (b_bank == acc_bank) & (b_addr == ev_aaddr)) if C < LOOP_DEPTH - 1
                      else 0),
            issue.eq(ev_valid & ~ev_eos & ~hazard),
            swap.eq(ev_valid & ev_eos & ro_free),
            self.i_stream.ready.eq(~clearing & ~self.clear &
                                   (~ev_valid | (issue & last_chunk) | swap)),
            self.busy.eq(clearing),
        ]
        p = self.i_stream.payload
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [
                ev_valid.eq(1), ev_eos.eq(p.eos), ev_neg.eq(p.neg), ev_chunk.eq(0),
                ev_waddr.eq(_mul_const(p.index, C)), ev_aaddr.eq(_mul_const(p.vector, C)),
                ev_vec.eq(p.vector),
            ]
        with m.Elif(issue & last_chunk | swap):
            m.d.sync += ev_valid.eq(0)
        clr_issue = clearing & clr_run
        with m.If(issue & ~last_chunk | clr_issue):
            m.d.sync += [ev_chunk.eq(Mux(last_chunk, 0, ev_chunk + 1)), ev_waddr.eq(ev_waddr + 1),
                         ev_aaddr.eq(ev_aaddr + 1)]
        with m.If(swap):
            m.d.sync += [ro_pending.eq(1), ro_bank.eq(acc_bank), acc_bank.eq(~acc_bank)]

        # ---- accumulate pipeline --------------------------------------------------------------
        # (the clear pass issues its bias items through the same S0 counters: no muxes here)
        fwd = (c_valid & (c_bank == acc_bank) & (c_addr == ev_aaddr)) if C < LOOP_DEPTH else 0
        m.d.sync += [a_valid.eq(issue | clr_issue), a_bank.eq(acc_bank), a_neg.eq(ev_neg),
                     a_bias.eq(clearing), a_addr.eq(ev_aaddr), a_chunk.eq(ev_chunk),
                     a_waddr.eq(ev_waddr), a_fwd.eq(issue & fwd),
                     b_fwd.eq(a_fwd), c_fwd.eq(b_fwd)]
        m.d.comb += wrom.r_addr.eq(ev_waddr)       # registered by the ROM: the read is in A
        a_waddr_full = a_addr + Mux(a_bank, C + E, C)
        m.d.sync += [
            b_valid.eq(a_valid), b_bank.eq(a_bank), b_neg.eq(a_neg), b_bias.eq(a_bias),
            b_addr.eq(a_addr),
            b_wmaddr.eq(a_waddr_full),
            c_valid.eq(b_valid), c_bank.eq(b_bank), c_neg.eq(b_neg), c_bias.eq(b_bias),
            c_maddr.eq(b_wmaddr), c_addr.eq(b_addr),
            d_valid.eq(c_valid), d_bank.eq(c_bank), d_maddr.eq(c_maddr),
            e_valid.eq(d_valid), e_bank.eq(d_bank), e_maddr.eq(d_maddr),
        ]
        # the accumulate copy registers its read address (the read is in B) and its write address
        # and enable (the write of the sum is in E)
        # (the read address is computed in S0 and registered: no logic in front of the copies)
        a_raddr = Signal(maddr)
        m.d.sync += a_raddr.eq(Mux(clearing, ev_chunk, ev_aaddr + Mux(acc_bank, C + E, C)))
        m.d.comb += [acc.r_addr.eq(a_raddr),
                     acc.w_addr.eq(d_maddr), acc.w_en.eq(d_valid), acc.w_data.eq(e_sum),
                     acc_ro.w_addr.eq(e_maddr), acc_ro.w_en.eq(e_valid), acc_ro.w_data.eq(e_sum)]
        # C: the word's flag for D (an untouched word enters the adder as 0, a bias word as read,
        # a forwarded word as the sum in g2); the sign is applied one stage before the adder:
        # -w = ~w + 1 (XOR here, carry-in at D)
        m.d.sync += [f_q2[0].eq(f_q[0]), f_q2[1].eq(f_q[1]),
                     d_keep.eq((Mux(c_bank, f_q2[1], f_q2[0]) | c_bias) & ~c_fwd),
                     g1.eq(e_sum)]
        with m.If(c_fwd):
            m.d.sync += g2.eq(g1)
        with m.Else():                              # (sync reset: the FF's LSR)
            m.d.sync += g2.eq(0)
        with m.If(c_bias):
            m.d.sync += [u_op.eq(0), u_cin.eq(0)]
        with m.Else():
            m.d.sync += [u_op.eq(r_w.as_value() ^ Mux(c_neg, (1 << w_l.size) - 1, 0)),
                         u_cin.eq(c_neg)]
        # D: one carry chain per lane, (w ^ s) + s + (acc if kept) + (forwarded sum), the operand
        # select inside the carry chain (at most one of the two is nonzero), into E's register
        sums = [fused_add(m, W, u_op[lane], r_a[lane], d_keep, g2[lane], _SEL_ACC, u_cin,
                          target=self.carry_target, name=f"acc{lane}") for lane in range(P)]
        m.d.sync += e_sum.eq(Cat(*sums))

        # ---- readout ------------------------------------------------------------------------
        # A cursor (entry, memory address, chunk, the bank's vector flags shifted down as it
        # moves on) issues one read per cycle into a fixed pipeline (R: RAM read register, Q: the
        # RAM's output register, no enables: ``o_stream.ready`` reaches no block-RAM pin); Q
        # loads the output register if it is free or being taken, else Q and R are dropped and
        # the cursor rewinds to Q's item (each item carries the cursor it was issued at).
        ro_busy = ro_active | r_valid | q_valid
        adv_o = ~o_valid | self.o_stream.ready
        drop = q_valid & ~adv_o
        deliver = q_valid & adv_o
        ro_issue = Signal()
        drained = ~((a_valid & (a_bank == ro_bank)) | (b_valid & (b_bank == ro_bank)) |
                    (c_valid & (c_bank == ro_bank)) | (d_valid & (d_bank == ro_bank)) |
                    (e_valid & (e_bank == ro_bank)))
        m.d.comb += ro_issue.eq(ro_active & (ro_ptr < E) & ~drop)
        ro_flags = Signal(V, name="ro_flags")
        cursor = Cat(ro_ptr, ro_mptr, ro_chunk, ro_flags)
        r_cur = Signal(len(cursor), name="r_cursor")
        q_cur = Signal(len(cursor), name="q_cursor")
        q_ptr = q_cur[:len(ro_ptr)]
        # (the start is registered: ``drained`` looks at every accumulate stage)
        ro_go = Signal()
        m.d.sync += ro_go.eq(ro_pending & drained & ~ro_go)
        with m.If(ro_go):
            m.d.sync += [ro_pending.eq(0), ro_active.eq(1), ro_ptr.eq(0), ro_chunk.eq(0),
                         ro_mptr.eq(Mux(ro_bank, C + E, C)),
                         ro_flags.eq(Mux(ro_bank, vflag[1], vflag[0]))]
        if compact:
            # at a vector's first chunk: untouched -> one zero beat, skip its chunks
            m.d.comb += ro_zero.eq((ro_chunk == 0) & ~ro_flags[0])
        with m.If(drop):
            m.d.sync += cursor.eq(q_cur)
        with m.Elif(ro_issue):
            with m.If(ro_zero):
                m.d.sync += [ro_ptr.eq(ro_ptr + C), ro_mptr.eq(ro_mptr + C),
                             ro_flags.eq(ro_flags >> 1)]
            with m.Else():
                m.d.sync += [ro_ptr.eq(ro_ptr + 1), ro_mptr.eq(ro_mptr + 1),
                             ro_chunk.eq(Mux(ro_chunk == C - 1, 0, ro_chunk + 1))]
                with m.If(ro_chunk == C - 1):
                    m.d.sync += ro_flags.eq(ro_flags >> 1)
        with m.If(ro_active & (ro_ptr == E) & ~r_valid & ~q_valid):
            m.d.sync += ro_active.eq(0)
            if compact:
                # every vector flag of the bank has been read: clear them for its next step
                for k in range(2):
                    with m.If(ro_bank == k):
                        m.d.sync += vflag[k].eq(0)
        m.d.sync += [r_valid.eq(ro_issue), r_zero.eq(ro_zero), r_cur.eq(cursor),
                     q_valid.eq(r_valid & ~drop), q_zero.eq(r_zero), q_cur.eq(r_cur)]
        # an untouched word reads as 0: synchronous reset taking priority over the enable (the
        # ECP5 FF's LSR), not a gate in front of the register
        with m.If(adv_o):
            m.d.sync += [o_valid.eq(q_valid), o_zero.eq(q_zero), o_data.eq(q_data)]
        with m.If(adv_o & (~Mux(ro_bank, f_q[1], f_q[0]) | q_zero)):
            m.d.sync += o_data.eq(0)
        # a delivered word's flag is cleared (a zero beat's words were never touched)
        m.d.sync += [z_en.eq(deliver & ~q_zero), z_addr.eq(q_ptr)]
        m.d.comb += [acc_ro.r_addr.eq(ro_mptr), self.o_stream.valid.eq(o_valid)]
        if compact:
            m.d.comb += [self.o_stream.payload.lanes.eq(o_data),
                         self.o_stream.payload.zero.eq(o_zero)]
        else:
            m.d.comb += self.o_stream.payload.eq(o_data)

        # ---- vector flags (compact readout): set when an event's first item issues ----------
        if compact:
            for k in range(2):
                with m.If(issue & (ev_chunk == 0) & (acc_bank == k)):
                    m.d.sync += vflag[k].bit_select(ev_vec, 1).eq(1)

        # ---- flags: read with the item in S0 (accumulate; registered twice, the first register
        # next to the RAM) or with the readout address; set by the item in B, cleared one cycle
        # after their readout and by the clear pass ---------------------------------------------
        for k, ram in enumerate(flags):
            ro_role = ro_busy & (ro_bank == k)
            with m.If(ro_role):
                m.d.comb += ram.r_addr.eq(ro_ptr)
            with m.Else():
                m.d.comb += ram.r_addr.eq(ev_aaddr)
            # (a bias item sets its bank-0 flag and clears the bank-1 flag of the same word)
            with m.If(b_valid & ((b_bank == k) | b_bias)):
                m.d.comb += [ram.w_addr.eq(b_addr), ram.w_data.eq(b_bank == k), ram.w_en.eq(1)]
            with m.Elif(z_en & (ro_bank == k)):
                m.d.comb += [ram.w_addr.eq(z_addr), ram.w_en.eq(1)]

        # ---- clear pass: E bias items into bank 0 (through the adder), bank 1 flags zeroed ----
        pipe_empty = ~a_valid & ~b_valid & ~c_valid & ~d_valid & ~e_valid
        with m.If(clr_issue & (ev_aaddr == E - 1)):
            m.d.sync += clr_run.eq(0)
        with m.If(clearing & ~clr_run & pipe_empty):
            m.d.sync += clearing.eq(0)
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clr_run.eq(1), ev_aaddr.eq(0), ev_chunk.eq(0),
                         a_valid.eq(0), b_valid.eq(0), c_valid.eq(0), d_valid.eq(0),
                         e_valid.eq(0)]
        with m.If(self.clear | clearing):
            if compact:
                # the bias (bank 0) touches every vector on the first step, if it is not all 0
                m.d.sync += [vflag[0].eq(((1 << V) - 1) * bias_touch), vflag[1].eq(0)]
            m.d.sync += [acc_bank.eq(0), ev_valid.eq(0), ro_go.eq(0),
                         ro_pending.eq(0), ro_active.eq(0), r_valid.eq(0), q_valid.eq(0),
                         o_valid.eq(0), z_en.eq(0)]
        return m


class ZeroVectorExpander(wiring.Component):
    """Stream adapter: compact engine readout -> dense readout (every beat of every vector).

    Takes the ``o_stream`` of a :class:`SpikeAdditionEngine` built with
    ``compact_zero_vectors=True`` (payload ``{lanes, zero}``) and emits payload
    ``current_layout``: a beat with ``zero = 0`` passes through unchanged, a beat with
    ``zero = 1`` becomes ``chunks`` beats of all-zero lanes (it is acknowledged with the last
    one). For a consumer that must see every current, e.g. the neuron array, which steps every
    neuron every time step (settling neurons fire correction spikes without input).

    Combinational (no latency, no registers but a chunk counter): ``o.valid = i.valid``,
    ``i.ready = o.ready & (~zero | last)``, so it adds a ``ready`` path through one AND gate;
    put a register slice behind it if timing needs one.

    Honest cost note: behind this adapter the consumer still takes ``n_vectors × chunks``
    beats per step, and the adapter back-pressures the engine's readout while it expands, so
    end-to-end cycles are bounded by the consumer, as with the dense protocol (``equispike
    bench engine``: 74.9 % end-to-end vs 95.6 % engine utilization on the qkv layer). The
    compact form pays off when the consumer can skip a zero vector (e.g. a neuron array that
    fast-forwards settled neurons, or a sparse next layer), or when the expansion runs behind
    a buffer / overlaps with other work so the engine can proceed to the next step.

    Parameters
    ----------
    lanes, acc_width, chunks : int
        As the engine's (``lanes``, ``acc_width``, ``chunks``); see :meth:`for_engine`.
    """

    def __init__(self, *, lanes: int, acc_width: int, chunks: int):
        self.lanes = check_int("lanes", lanes, 1, 256)
        self.acc_width = check_int("acc_width", acc_width, 2, 48)
        self.chunks = check_int("chunks", chunks, 1, 1 << 20)
        self.current_layout = data.ArrayLayout(signed(self.acc_width), self.lanes)
        self.readout_layout = data.StructLayout({"lanes": self.current_layout, "zero": 1})
        super().__init__({
            "i_stream": In(stream.Signature(self.readout_layout)),
            "o_stream": Out(stream.Signature(self.current_layout)),
        })

    @classmethod
    def for_engine(cls, engine: SpikeAdditionEngine) -> ZeroVectorExpander:
        if not engine.compact:
            raise ValueError("the engine's readout is not compact (compact_zero_vectors=False)")
        return cls(lanes=engine.lanes, acc_width=engine.acc_width, chunks=engine.chunks)

    def elaborate(self, platform):
        m = Module()
        C = self.chunks
        cnt = Signal(range(max(C, 2)))
        i, o = self.i_stream, self.o_stream
        last = cnt == C - 1
        m.d.comb += [
            o.valid.eq(i.valid),
            o.payload.eq(Mux(i.payload.zero, 0, i.payload.lanes.as_value())),
            i.ready.eq(o.ready & (~i.payload.zero | last)),
        ]
        with m.If(o.valid & o.ready & i.payload.zero):
            m.d.sync += cnt.eq(Mux(last, 0, cnt + 1))
        return m


def _mul_const(x, k: int):
    """``x * k`` for a constant ``k`` as a sum of shifted copies (no multiplier/DSP)."""
    terms = [x << i for i in range(k.bit_length()) if (k >> i) & 1]
    out = terms[0] if terms else C_(0, 1)
    for t in terms[1:]:
        out = out + t
    return out


def _synth_engine(p: dict) -> SpikeAdditionEngine:
    """Synthesis block: random int8 weights ``n_in x n_out`` (seeded), bias, ``n_vectors``."""
    rng = np.random.default_rng(int(p.get("seed", 1)))
    n_in, n_out = int(p.get("n_in", 64)), int(p.get("n_out", 192))
    w = rng.integers(-128, 128, size=(n_in, n_out))
    b = rng.integers(-1000, 1001, size=n_out)
    return SpikeAdditionEngine(w, b, lanes=int(p.get("lanes", 64)),
                               acc_width=int(p.get("acc_width", required_acc_width(w, b))),
                               n_vectors=int(p.get("n_vectors", 17)),
                               ram_target="ecp5" if p.get("family") == "ecp5" else "generic",
                               carry_target="ecp5" if p.get("family") == "ecp5" else "generic")


#: picked up by ``equispike synth`` (rtl/synth.py): name -> (factory, defaults, lane sweep)
SYNTH_BLOCKS = {
    "engine": (_synth_engine, {"lanes": 64, "n_in": 64, "n_out": 192, "n_vectors": 17},
               [{"lanes": 16}, {"lanes": 32}, {"lanes": 64}]),
}
