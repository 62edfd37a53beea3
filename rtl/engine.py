"""Event-driven spike-addition engine (SPEC §3 AW linear, §11): one weight row per spike event."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Assert, Cat, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.hdl import C as C_
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.linear import aw_current_bound
from ..model.widths import signed_bits
from ._bram import RAM_TARGETS, RegisteredRAM
from ._carry import CARRY_TARGETS, fused_add, kept_reg
from ._util import ceil_div, check_int, pack_lanes

__all__ = ["SpikeAdditionEngine", "ZeroVectorExpander", "required_acc_width"]

WEIGHT_BITS = 8
# accumulate operand, per bit (rtl/_carry.py): the word read if kept, or the forwarded sum
# (0 unless forwarding): b = acc_i, c = keep, d = forwarded_i
_SEL_ACC = lambda b, c, d: (b & c) | d  # noqa: E731
#: Read-modify-write loop of an accumulator word, in items (cycles): an item issued less than
#: this many cycles after one that updates the same word is held back (hazard stall)
LOOP_DEPTH = 5
#: Read latency of the readout (cycles from issuing a read to the RAM output register "Q"): the
#: readout address is registered once, then twice more per column of the readout accumulator
#: copy (``addr_regs=2``); the flag RAMs are read with the issue (``addr_regs=1``, out in stage
#: 3), their word registered next to them and copied per output group (Q)
RO_LAT = 4
#: Largest bank (words) whose "touched" flags are kept in distributed RAM (at most 4 16-word
#: blocks per read port: a 4:1 read multiplexer); larger ones use a block RAM per bank
LUTRAM_FLAG_WORDS = 64
#: Forms of the "touched" flag memories (``SpikeAdditionEngine(flag_ram=...)``)
FLAG_RAMS = ("distributed", "block")
#: Bits per group of the output register with its own copies of the output valid bit and the
#: "untouched word" flag (their enable/reset nets stay local): one block-RAM column's worth of
#: the readout copy (18-bit mode), whose output the group registers
O_GROUP_BITS = 18


def required_acc_width(weights, bias=None) -> int:
    """Signed width holding any per-step current of an AW layer: ``max_c Σ_j |W_jc| + |b_c|``
    (the bound :func:`~equispike.model.linear.aw_current_bound` defines).

    ``weights`` has shape ``(n_in, n_out)`` (one row per input, the artifact's weight
    transposed); every input spikes at most once (±1) per step, and the bias is added on the
    first step only.
    """
    w = aw_current_bound(np.asarray(weights).T, bias)
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
    * Per bank a 1-bit "touched this step" flag per word, in distributed RAM (asynchronous
      reads; banks of at most ``LUTRAM_FLAG_WORDS = 64`` words) or else a block RAM (registered
      addresses, read latency 3; see ``flag_ram``): a word not yet touched in the step enters
      the adder as 0 and reads out as 0 (synchronous reset of the output register), so
      readout writes no zeros; it clears the flags of the words it has delivered (registered,
      one cycle later).
    * (compact readout) Per bank an ``n_vectors``-bit register of "vector touched this step"
      flags, set when an event's first item issues, loaded by the clear pass (bank 0: all ones
      if the bias has a nonzero element, else 0; bank 1: 0), and cleared when the bank's
      readout has delivered its last beat. The readout checks the flag of each vector before its
      first chunk: untouched -> one ``zero`` beat and a jump of ``chunks`` words.
    * Input: a two-entry buffer (``i_stream.ready`` is a register: "not full"), the event's
      word addresses computed as it enters; the sequencer (S0) takes the next event when it
      issues the last item of the current one.
    * Accumulate pipeline, one item (event, chunk) per cycle, 7 stages: S0 issues the item
      (hazard check) and reads the word's flag; A reads the weight (one address register per
      group of four block-RAM columns) and sets the flag; B reads the accumulator word (one
      address register per column); C: the weight leaves the ROM's output register into a
      fabric register; D: the word leaves the RAM's output register into a fabric register
      (no block-RAM output is routed to an adder or a LUT).
      The ROM holds every weight twice, as ``w`` and as ``~w = -w - 1`` (a negative event
      reads the second copy, the ``+ 1`` is the adder's carry-in); E: one carry chain per lane adds
      ``w' + s`` (``w'`` the word read from the ROM, ``s`` the sign) to the word (if
      touched, or a bias word), to 0 (untouched) or to the
      forwarded sum (below), the select inside the carry chain; F: the sum, registered, is
      written. A word is read 2 cycles after its item issues and written 6 cycles after:
      read-modify-write loop ``LOOP_DEPTH = 5``. An item whose word is updated by the item
      issued ``KF`` cycles before it (``KF = 4`` with 4 chunks per row, else 3) gets that
      item's sum forwarded (no stall); one updated by an item 1..4 cycles before it at another
      distance is held in S0 (hazard stall). The same word comes back no sooner than
      ``chunks`` items later (two events of the same vector): back-to-back events never
      stall with ``chunks >= 3`` (3 chunks: one stall cycle if the second event issues exactly
      one cycle late), a stall with fewer (an event then costs 3 cycles instead of
      ``chunks``); with ``chunks >= 5`` no check is built.
    * An event costs ``chunks`` cycles (see stall above); the end-of-step marker one cycle,
      plus a wait if the previous step's readout has not finished. The readout's first read
      is issued a fixed delay after the end-of-step (4 cycles, 3 with block-RAM flags), once
      the step's last write is in; it streams one beat per cycle into a pipeline of
      ``RO_LAT = 4`` stages (5 with block-RAM flags: its flag, read with the issue, is out in
      stage 3) and the output register: latency 5 (6) cycles from issue to
      ``o_stream.valid``. Back-pressure never reaches the block RAMs: a beat that finds the
      output register full and not taken is dropped, and (one cycle later) every beat behind
      it; the readout then issues it again (it is back ``RO_LAT + 2`` cycles after the drop).
      The readout is done, and the next end-of-step may switch banks the cycle after, when
      its last beat is taken into the output register. Ideal cycles of a step:
      ``events × chunks``. The next step's end-of-step waits for this readout, so a step costs
      at least its readout beats: ``n_vectors × chunks`` with the dense protocol (a sparse
      step is then readout bound), ``touched · chunks + untouched <= events × chunks +
      n_vectors`` with the compact one.
    * ``clear`` (strobe) and reset run a clear pass of ``n_vectors · chunks + 7`` cycles: the
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
        ``DP16KD`` read through their output registers (at most 1024 words each: ``2 · n_in ·
        chunks`` for the weights, ``2 · n_vectors · chunks + chunks + 1`` for the
        accumulators).
    carry_target : {None, "generic", "ecp5"}
        Form of the accumulate adder (:func:`~equispike.rtl._carry.fused_add`): ``"ecp5"``
        selects read word / forwarded sum / 0 inside the ``CCU2C`` carry chain.
    sign_in_rom : bool, optional
        The weight ROM also holds every weight complemented (``~w`` rows, read by negative
        events: ``-w = ~w + 1``, the ``+ 1`` as the adder's carry-in), so the weight goes from
        the ROM into the adder's operand register without a LUT: twice the ROM words for one
        LUT per weight bit less. Default: on ECP5 (``ram_target="ecp5"``) when the rows fit one
        ``DP16KD`` column (``2 · n_in · chunks <= 1024``); off elsewhere (the UP5K has 30 small
        block RAMs), where the sign is applied as ``w XOR s`` a stage before the adder.
    flag_ram : {None, "distributed", "block"}
        Memory of the per-bank "touched" flags. ``"distributed"``: asynchronously read LUT RAM
        (ECP5; at most ``LUTRAM_FLAG_WORDS`` words per bank), readout latency ``RO_LAT``;
        ``"block"``: a block RAM per bank read through registers, one cycle more of readout
        latency. Default: distributed exactly when the bank fits. On iCE40, which has no LUT
        RAM, distributed flags become flip-flops with a wide read multiplexer: use ``"block"``
        there (the synthesis flow does).
    """

    def __init__(self, weights, bias=None, *, lanes: int, acc_width: int, n_vectors: int = 1,
                 compact_zero_vectors: bool = True, ram_target: str | None = None,
                 carry_target: str | None = None, sign_in_rom: bool | None = None,
                 flag_ram: str | None = None):
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
        #: the weight ROM holds ~w rows for negative events (see ``sign_in_rom``)
        fits = 2 * self.n_in * self.chunks <= 1024
        if sign_in_rom is None:
            sign_in_rom = ram_target == "ecp5" and fits
        elif sign_in_rom and ram_target == "ecp5" and not fits:
            raise ValueError(f"sign_in_rom: 2 x n_in x chunks = {2 * self.n_in * self.chunks} "
                             f"weight words exceed one DP16KD column (1024 words)")
        self.sign_in_rom = bool(sign_in_rom)
        if flag_ram is None:
            flag_ram = "distributed" if self.entries <= LUTRAM_FLAG_WORDS else "block"
        elif flag_ram not in FLAG_RAMS:
            raise ValueError(f"flag_ram must be one of {FLAG_RAMS}, got {flag_ram!r}")
        elif flag_ram == "distributed" and self.entries > LUTRAM_FLAG_WORDS:
            raise ValueError(f"flag_ram='distributed' holds at most {LUTRAM_FLAG_WORDS} words per "
                             f"bank, got n_vectors x chunks = {self.entries}")
        self.flag_ram = flag_ram
        #: readout stages from a read's issue to the RAM output register (see ``flag_ram``)
        self.readout_stages = RO_LAT if flag_ram == "distributed" else RO_LAT + 1
        if ram_target == "ecp5":
            # (both RAMs have contents: one DP16KD column in its 18-bit mode, 1024 words, per
            # 18 bits of word; the accumulators also hold the dummy word of their write side)
            rom, acc = self.n_in * self.chunks, 2 * self.entries + self.chunks + 1
            if max(rom, acc) > 1024:
                raise ValueError(
                    f"ram_target='ecp5': the weight ROM needs {rom} words (n_in x chunks) and "
                    f"the accumulators {acc} (2 x n_vectors x chunks + chunks + 1); at most "
                    f"1024 each (one DP16KD column in its 18-bit mode): use more lanes or split "
                    f"the layer")

        self.event_layout = data.StructLayout({
            "index": unsigned(max(1, (self.n_in - 1).bit_length())),
            "vector": unsigned(max(1, (self.n_vectors - 1).bit_length())),
            "neg": 1,
            "eos": 1,
        })
        self.current_layout = data.ArrayLayout(signed(self.acc_width), self.lanes)
        self.compact = bool(compact_zero_vectors)
        #: Amaranth simulation only: assert every cycle that the sequencer's registered
        #: decodes agree with its state (``Assert`` statements; off for Verilog generation)
        self.check_invariants = False
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
        """Words of the weight ROM: row ``j``, chunk ``c`` at ``j * chunks + c``, and the
        same with every weight complemented (``~w = -w - 1``: a negative event adds ``~w + 1``,
        the ``+ 1`` as the adder's carry-in) ``n_in * chunks`` words later."""
        words = []
        for sign in ((0, -1) if self.sign_in_rom else (0,)):
            for j in range(self.n_in):
                for chunk in self._padded(self.weights[j]):
                    words.append(pack_lanes(np.asarray(chunk) ^ sign, WEIGHT_BITS))
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
        # (the weight ROM's read address through one register per four columns: the
        # sequencer's counter drives a few loads and stays with the sequencer, each copy sits
        # among its columns. The sign is in the ROM: no LUT between it and the adder)
        rows = 2 * self.n_in * C if self.sign_in_rom else max(self.n_in * C, 2)
        m.submodules.wrom = wrom = RegisteredRAM(unsigned(w_l.size), rows,
                                                 init=self.weight_init(), target=tgt,
                                                 read_addr_regs=1, read_addr_group=4)
        # accumulators: bias = words 0..C-1 (loaded into bank 0 by the clear pass), bank 0 =
        # C..C+E-1, bank 1 = C+E..C+2E-1; one write (the adders) into two copies, one read by
        # the accumulate path and one by the readout (no bank multiplexers)
        acc_init = self.bias_init() + [0] * (2 * E)
        m.submodules.acc = acc = RegisteredRAM(unsigned(acc_l.size), 2 * E + C, init=acc_init,
                                               target=tgt, addr_regs=True, dummy_write_addr=True)
        m.submodules.acc_ro = acc_ro = RegisteredRAM(unsigned(acc_l.size), 2 * E + C,
                                                     init=acc_init, target=tgt, addr_regs=True,
                                                     dummy_write_addr=True)
        # per-bank "touched this step" flags (a word not touched reads as 0: no zeroing writes),
        # in distributed RAM (asynchronous reads, one port for the accumulate path and one for
        # the readout): a block RAM would be placed wherever one is free, and its output routed
        # across the chip to the two registers it feeds
        # (block RAMs for large banks: registered addresses, read latency 3; the readout then
        # reads its accumulator copy one cycle later, RO_LAT + 1)
        lut_flags = self.flag_ram == "distributed"
        ro_lat = self.readout_stages
        flags = []
        for k in range(2):
            if lut_flags:
                mem = Memory(shape=unsigned(1), depth=max(E, 2), init=[],
                             # (ECP5 LUT RAM; iCE40 has none: there Yosys builds the 1-bit
                             # words from flip-flops)
                             attrs={"ram_style": "distributed"} if tgt == "ecp5" else {})
                flags.append((mem.write_port(), mem.read_port(domain="comb"),
                              mem.read_port(domain="comb")))
            else:
                mem = RegisteredRAM(unsigned(1), max(E, 2), target=tgt, addr_regs=True)
                flags.append(mem)
            m.submodules[f"flag{k}"] = mem

        # ---- state --------------------------------------------------------------------------
        clearing = Signal(init=1)
        clr_run = Signal(init=1)       # clear pass still issuing bias items (S0 counters)
        acc_bank = Signal()
        # S0: current event (addresses of its next chunk)
        ev_valid, ev_eos, ev_neg = Signal(), Signal(), Signal()
        V = self.n_vectors
        ev_vec = Signal(range(max(V, 2)))
        ev_chunk = Signal(cidx)
        ev_waddr = Signal(range(rows))      # (with sign_in_rom the ~w rows: negative events)
        ev_aaddr = Signal(eaddr)
        # the word's memory address in bank 0 and bank 1 (counted along: no adder after S0)
        ev_m0, ev_m1 = Signal(maddr, init=C), Signal(maddr, init=C + E)
        # accumulate pipeline, one item (event chunk, or bias word in the clear pass) per cycle,
        # stages A..F (see the class docstring)
        a_valid, a_bank, a_neg, a_bias = Signal(), Signal(), Signal(), Signal()
        a_addr, a_chunk = Signal(eaddr), Signal(cidx)
        b_valid, b_bank, b_neg, b_bias = Signal(), Signal(), Signal(), Signal()
        b_addr, b_wmaddr = Signal(eaddr), Signal(maddr)
        c_valid, c_bank, c_neg, c_bias = Signal(), Signal(), Signal(), Signal()
        c_maddr = Signal(maddr)
        d_valid, d_bank, d_neg, d_bias = Signal(), Signal(), Signal(), Signal()
        d_maddr, d_addr = Signal(maddr), Signal(eaddr)
        e_valid, e_bank = Signal(), Signal()
        f_valid, f_bank = Signal(), Signal()
        a_fwd, b_fwd, c_fwd, d_fwd = Signal(), Signal(), Signal(), Signal()
        c_addr = Signal(eaddr)
        r_w = wrom.r_data               # weight or its complement, stage C (the ROM's output register)
        d_w = Signal.like(r_w)          # and registered in the fabric, stage D
        a_flag, b_flag, c_flag, d_flag = Signal(), Signal(), Signal(), Signal()  # word's flag
        r_a = acc_l(acc.r_data)         # accumulator word, stage D (the RAM's output register)
        e_a = Signal(acc_l, reset_less=True)    # and registered in the fabric, stage E
        f_sum = Signal(acc_l, reset_less=True)  # stage F: the sum, written at the end of F
        u_op = Signal(w_l)              # stage E: the weight, sign applied
        # readout: a cursor issuing reads into RO_LAT stages (Q: the RAM's output register), then
        # the output register (o); see the readout section
        ro_active, ro_bank = Signal(), Signal()
        # the swap, delayed until the readout may start (see readout)
        ro_gos = [Signal(name=f"ro_go{i}") for i in range(LOOP_DEPTH + 2 - ro_lat)]
        ro_go = ro_gos[-1]
        ro_ptr = Signal(ent)
        ro_mptr = Signal(maddr)
        # readout items in flight: stage i+1 of RO_LAT (address registers, RAM read register,
        # RAM output register "Q"), and the output register
        ro_v = [Signal(name=f"ro_v{i + 1}") for i in range(ro_lat)]
        q_valid = ro_v[-1]
        ro_drop = Signal()      # Q's item was dropped last cycle: rewind (see readout)
        ro_inflight = Cat(*ro_v, ro_drop).any()
        o_valid = Signal()
        q_data = acc_l(acc_ro.r_data)   # readout: the RAM's output register
        o_data = Signal(acc_l)
        # compact readout: per-bank vector flags, readout vector/chunk counters, zero-beat flags
        compact = self.compact
        bias_touch = int(np.any(self.bias != 0))
        vflag = [Signal(V, name=f"vflag{k}", init=((1 << V) - 1) * bias_touch if k == 0 else 0)
                 for k in range(2)]
        ro_chunk = Signal(cidx)
        ro_zero = Signal()
        o_zero = Signal()

        # ---- S0: event sequencer, hazard stall ------------------------------------------------
        issue = Signal()
        hazard = Signal()
        last_chunk = Signal(init=C == 1)    # ev_chunk == C - 1 (kept with the counter)
        ev_first = Signal(init=1)           # ev_chunk == 0
        swap = Signal()
        # the readout is free (registered, see readout; cleared by the swap that makes it busy)
        ro_free = Signal()
        # The next ev_valid / ev_eos / last_chunk (every update below goes through these), and
        # decodes of them kept as registers: what takes the next event, and what advances the
        # counters, is then one LUT from registers (their enables reach the address counters
        # and the input buffer, spread over dozens of flip-flops)
        nv_valid, nv_eos, nv_last = Signal(), Signal(), Signal()
        can_take = Signal(init=1)   # ~ev_valid | ev_valid & ~ev_eos & last_chunk
        eos_w = Signal()            # ev_valid & ev_eos (an end-of-step waits in S0)
        act = Signal()              # ev_valid & ~ev_eos (an event's items are issuing)
        mid_ev = Signal()           # ev_valid & ~ev_eos & ~last_chunk
        ld_ok = Signal(init=1)      # ~ev_valid | ev_eos | last_chunk
        m.d.comb += [nv_valid.eq(ev_valid), nv_eos.eq(ev_eos), nv_last.eq(last_chunk)]
        # An item reads its word 2 cycles after issue and writes it 6 cycles after: the word of an
        # item issued k = 1..4 cycles earlier (now in A..D) is not written in time. For one
        # distance KF its sum is forwarded into the adder instead (the sum register delayed
        # KF - 1 cycles, reset unless forwarding: no multiplexer in front of the adder); the
        # other distances hold the item in S0 (hazard stall). The same word comes back no
        # sooner than C items later (the same chunk of the next event of the vector): KF = 3,
        # or 4 with 4 chunks per row, so back-to-back events of a vector never stall with
        # >= 3 chunks per row (C = 3: unless 1 cycle apart), and nothing is built with >= 5.
        KF = 4 if C == 4 else 3
        # (C = 3: the one stalling distance, 4, is the first item of an event of the vector of
        # the event before it, taken when the sequencer was idle one cycle after that event's
        # last item: its items issue back to back, so that is a stall of the cycle after the
        # take, told by a register, not by address compares on the S0 path)
        ev_had = Signal()       # ev_vec is that of an accumulate event (since clear)
        iss1, hz = Signal(), Signal()   # issue 1 cycle ago; stall (C = 3)
        m.d.sync += iss1.eq(issue)
        st = [(a_valid, a_bank, a_addr), (b_valid, b_bank, b_addr), (c_valid, c_bank, c_addr),
              (d_valid, d_bank, d_addr)]
        st_match = {k: st[k - 1][0] & (st[k - 1][1] == acc_bank) & (st[k - 1][2] == ev_aaddr)
                    for k in range(max(C, 1), LOOP_DEPTH)}
        m.d.comb += [
            hazard.eq(_any(st_match[k] for k in range(max(C, 1), LOOP_DEPTH) if k != KF)
                      if C != 3 else hz),
            issue.eq(act & ~hazard),
            swap.eq(eos_w & ro_free),
            self.busy.eq(clearing),
        ]
        # input buffer: two entries (main, skid), ``i_stream.ready`` registered (not full) and
        # the row/word addresses of an event computed as it enters; the sequencer loads the
        # main entry when it has no event or finishes the one it has
        ib_l = data.StructLayout({"eos": 1, "neg": 1, "vec": ev_vec.shape(),
                                  "waddr": ev_waddr.shape(), "aaddr": ev_aaddr.shape(),
                                  "m0": ev_m0.shape(), "m1": ev_m1.shape()})
        ib, ib_skid = Signal(ib_l), Signal(ib_l)
        ib_v, ib_skid_v = Signal(), Signal()
        p = self.i_stream.payload
        p_in = Signal(ib_l)
        aaddr_in = _mul_const(p.vector, C)
        m.d.comb += [p_in.eos.eq(p.eos), p_in.neg.eq(p.neg), p_in.vec.eq(p.vector),
                     p_in.waddr.eq(_mul_const(p.index, C) + (Mux(p.neg, self.n_in * C, 0)
                                                             if self.sign_in_rom else 0)),
                     p_in.aaddr.eq(aaddr_in),
                     p_in.m0.eq(aaddr_in + C), p_in.m1.eq(aaddr_in + C + E),
                     self.i_stream.ready.eq(~ib_skid_v & ~clearing & ~self.clear)]
        accept = self.i_stream.valid & self.i_stream.ready
        # (with C > 1 an event's last item never stalls: its first one did, if at all)
        take = ib_v & (can_take | swap) if C > 1 else ib_v & (~ev_valid | issue & last_chunk | swap)
        with m.If(~ib_v | take):
            with m.If(ib_skid_v):
                m.d.sync += [ib.eq(ib_skid), ib_v.eq(1), ib_skid_v.eq(0)]
            with m.Else():
                m.d.sync += [ib.eq(p_in), ib_v.eq(accept)]
        with m.Elif(accept):
            m.d.sync += ib_skid_v.eq(1)
        # (the skid entry loads every accepted event, its enable one LUT from the ports and
        # registers; it is valid only if the main entry was not free)
        with m.If(accept):
            m.d.sync += ib_skid.eq(p_in)
        # (taken while idle: no issue this cycle; ev_vec is the event before it unless ev_eos)
        m.d.sync += hz.eq(take & ~ev_valid & iss1 & ev_had & ~ev_eos & ~ib.eos & (ib.vec == ev_vec))
        # The counters load the main entry whenever it could be taken but for the readout
        # (C > 1): at a take, or while an end-of-step waits for the readout, when the entry
        # is taken later unchanged (and nothing issues meanwhile); an event's last item never
        # stalls with C > 1, so an entry is taken whenever it is loaded in the other states.
        # Their enable is then one LUT from registers, exclusive with the increment's.
        load = ib_v & ld_ok if C > 1 else take
        with m.If(load):
            m.d.sync += [ev_chunk.eq(0), ev_first.eq(1), ev_waddr.eq(ib.waddr),
                         ev_aaddr.eq(ib.aaddr), ev_vec.eq(ib.vec), ev_m0.eq(ib.m0), ev_m1.eq(ib.m1)]
        with m.If(take):
            m.d.sync += [ev_had.eq(~ib.eos), ev_neg.eq(ib.neg)]
            m.d.comb += [nv_valid.eq(1), nv_eos.eq(ib.eos), nv_last.eq(C == 1)]
        with m.Elif(issue & last_chunk | swap):
            m.d.comb += nv_valid.eq(0)
        clr_issue = clr_run         # (only ever set with ``clearing``)
        with m.If((mid_ev & ~hazard) | clr_issue):     # issue & ~last_chunk | clr_issue
            m.d.sync += [ev_waddr.eq(ev_waddr + 1), ev_aaddr.eq(ev_aaddr + 1),
                         ev_m0.eq(ev_m0 + 1), ev_m1.eq(ev_m1 + 1)]
            # (the clear pass wraps the chunk: it walks the bias words)
            with m.If(last_chunk):
                m.d.sync += [ev_chunk.eq(0), ev_first.eq(1)]
                m.d.comb += nv_last.eq(C == 1)
            with m.Else():
                m.d.sync += [ev_chunk.eq(ev_chunk + 1), ev_first.eq(0)]
                m.d.comb += nv_last.eq(ev_chunk == C - 2)
        with m.If(swap):
            m.d.sync += [ro_bank.eq(acc_bank), acc_bank.eq(~acc_bank)]

        # ---- accumulate pipeline --------------------------------------------------------------
        # (the clear pass issues its bias items through the same S0 counters: no muxes here)
        fwd = st_match.get(KF, C_(0, 1))
        m.d.sync += [a_valid.eq(issue | clr_issue), a_bank.eq(acc_bank), a_neg.eq(ev_neg & ~clearing),
                     a_bias.eq(clearing), a_addr.eq(ev_aaddr), a_chunk.eq(ev_chunk),
                     a_fwd.eq(issue & fwd),
                     b_fwd.eq(a_fwd), c_fwd.eq(b_fwd), d_fwd.eq(c_fwd)]
        m.d.comb += wrom.r_addr.eq(ev_waddr)       # registered by the ROM: the read is in A
        s0_maddr = Mux(acc_bank, ev_m1, ev_m0)
        a_maddr = Signal(maddr)
        m.d.sync += a_maddr.eq(s0_maddr)
        m.d.sync += [
            b_valid.eq(a_valid), b_bank.eq(a_bank), b_neg.eq(a_neg), b_bias.eq(a_bias),
            b_addr.eq(a_addr),
            b_wmaddr.eq(a_maddr),
            c_valid.eq(b_valid), c_bank.eq(b_bank), c_neg.eq(b_neg), c_bias.eq(b_bias),
            c_maddr.eq(b_wmaddr), c_addr.eq(b_addr),
            d_valid.eq(c_valid), d_bank.eq(c_bank), d_neg.eq(c_neg), d_bias.eq(c_bias),
            d_maddr.eq(c_maddr), d_addr.eq(c_addr),
            e_valid.eq(d_valid), e_bank.eq(d_bank),
            f_valid.eq(e_valid), f_bank.eq(e_bank),
        ]
        # both copies register their addresses (the write of the sum is at the end of E: presented
        # in D); the accumulate copy reads in B, the readout copy 2 cycles after the issue
        # (the read address is computed in S0 and registered: no logic in front of the copies)
        a_raddr = Signal(maddr)
        m.d.sync += a_raddr.eq(Mux(clearing, ev_chunk, s0_maddr))
        # the write address with the enable folded in (the RAMs' dummy word 2E + C when E holds
        # no item), one register per copy: a register, not a LUT, drives the columns' address
        # registers spread over the chip (cleared with e_valid: reset, clear)
        e_wa_d = Mux(d_valid & ~self.clear, d_maddr, 2 * E + C)
        for ram, copy in ((acc, "acc"), (acc_ro, "ro")):
            e_wa = Cat(*(kept_reg(m, e_wa_d[i], target=self.carry_target, name=f"e_wa_{copy}{i}",
                                  init=((2 * E + C) >> i) & 1, rst=ResetSignal())
                         for i in range(len(ram.w_addr))))
            m.d.comb += [ram.w_addr.eq(e_wa), ram.w_en.eq(1), ram.w_data.eq(f_sum)]
        m.d.comb += acc.r_addr.eq(a_raddr)
        # D: the word leaves the RAM's output register and the weight (w, or ~w for a negative
        # event: -w = ~w + 1, the + 1 as the carry-in at E) the ROM's (C), both into fabric
        # registers (no block-RAM output is routed to an adder or a LUT); the word's flag decides for E: an
        # untouched word enters the adder as 0, a bias word as read, a forwarded word as the
        # forwarded sum
        # (the flags that reach every lane are per-lane copies, kept_reg: one flip-flop
        # driving a thousand loads across the chip is a 3-4 ns route; the copies load from
        # the stage before, or from one LUT of it, and drive their lane's bits only)
        tgt_c = self.carry_target

        def per_lane(d, name: str) -> list:
            return [kept_reg(m, d[lane] if isinstance(d, list) else d, target=tgt_c,
                             name=f"{name}{lane}") for lane in range(P)]
        d_bias_l, d_fwd_l = per_lane(c_bias, "d_bias_l"), per_lane(c_fwd, "d_fwd_l")
        d_flag_l, d_neg_l = per_lane(c_flag, "d_flag_l"), per_lane(c_neg, "d_neg_l")
        e_keep_l = per_lane([(d_flag_l[lane] | d_bias_l[lane]) & ~d_fwd_l[lane]
                             for lane in range(P)], "e_keep_l")
        # (a bias item's sign is 0: the carry-in is the sign, copied along)
        u_cin_l = per_lane(d_neg_l, "u_cin_l")
        m.d.sync += [d_w.eq(r_w), e_a.eq(r_a)]
        lane_w = WEIGHT_BITS
        for lane in range(P):
            with m.If(d_bias_l[lane]):
                m.d.sync += u_op[lane].eq(0)
            with m.Else():
                w_lane = d_w[lane * lane_w:(lane + 1) * lane_w]
                if not self.sign_in_rom:
                    w_lane = w_lane ^ Mux(d_neg_l[lane], (1 << lane_w) - 1, 0)
                m.d.sync += u_op[lane].eq(w_lane)
        # the sum of the item KF cycles earlier, into E (reset unless forwarding: the FF's LSR)
        g = f_sum
        for i in range(KF - 2):
            gq = Signal(acc_l, reset_less=True, name=f"g{i + 1}")
            m.d.sync += gq.eq(g)
            g = gq
        e_fwd = Signal(acc_l, reset_less=True)
        for lane in range(P):
            with m.If(d_fwd_l[lane]):
                m.d.sync += e_fwd[lane].eq(g[lane])
            with m.Else():
                m.d.sync += e_fwd[lane].eq(0)
        # E: one carry chain per lane, (w ^ s) + s + (acc if kept) + (forwarded sum), the operand
        # select inside the carry chain (at most one of the two is nonzero), into F's register
        sums = [fused_add(m, W, u_op[lane], e_a[lane], e_keep_l[lane], e_fwd[lane], _SEL_ACC,
                          u_cin_l[lane], target=self.carry_target, name=f"acc{lane}")
                for lane in range(P)]
        m.d.sync += f_sum.eq(Cat(*sums))

        # ---- readout ------------------------------------------------------------------------
        # A cursor issues one read per cycle into a fixed pipeline of RO_LAT stages (address
        # registers next to the RAMs, RAM read register, Q: the RAM's output register; no
        # enables: ``o_stream.ready`` reaches no block-RAM pin); Q loads the output register if
        # it is free or being taken, else Q's item is dropped and, one cycle later (``ro_drop``,
        # registered: ``o_stream.ready`` reaches only Q's valid bit, the output register and the
        # flag clear), every item in flight with it, and the cursor rewinds to the dropped item
        # (each item carries the cursor it was issued at).
        # The cursor: entry, memory address, chunk, "first"/"last chunk" bits, the bank's vector
        # flags and a "vectors left" mask (both shifted down per vector). Everything deciding the
        # next cursor is a register or one LUT away from one (no compare on the entry).
        adv_o = ~o_valid | self.o_stream.ready
        drop = q_valid & ~adv_o
        deliver = q_valid & adv_o
        ro_flags = Signal(V, name="ro_flags")
        ro_vleft = Signal(V, name="ro_vleft")       # vectors not yet issued (bit 0: current)
        ro_first, ro_last = Signal(), Signal()      # ro_chunk == 0, ro_chunk == C - 1
        cursor = Cat(ro_ptr, ro_mptr, ro_chunk, ro_first, ro_last, ro_flags, ro_vleft)
        ro_cur = [Signal(len(cursor), name=f"ro_cursor{i + 1}") for i in range(ro_lat)]
        ro_z = [Signal(name=f"ro_zero{i + 1}") for i in range(ro_lat)]
        ro_f = [Signal(name=f"ro_final{i + 1}") for i in range(ro_lat)]   # the bank's last beat
        ro_c = [Signal(name=f"ro_clr{i + 1}") for i in range(ro_lat)]     # word reads as 0
        q_cur, q_zero, q_final = ro_cur[-1], ro_z[-1], ro_f[-1]
        d_cur = Signal(len(cursor), name="ro_cursor_dropped")
        q_ptr = q_cur[:len(ro_ptr)]
        ro_issue = ro_active & ro_vleft[0] & ~ro_drop
        if compact:
            # at a vector's first chunk: untouched -> one zero beat, skip its chunks
            m.d.comb += ro_zero.eq(ro_first & ~ro_flags[0])
        vec_end = ro_zero | ro_last
        ro_final = vec_end & (~ro_vleft[1] if V > 1 else 1)
        # The readout of the bank starts LOOP_DEPTH + 2 - ro_lat cycles after the swap
        # (``ro_go``), its first issue one cycle later, whose read (at the edge ending issue +
        # ro_lat - 2) follows the write of the bank's last item (issued the cycle before the
        # swap, written at the end of F: the edge ending swap + 5). Its flag reads (at issue, or
        # the edge after with block-RAM flags) follow that item's flag set (end of A, or B).
        m.d.sync += [ro_gos[0].eq(swap),
                     *(ro_gos[i].eq(ro_gos[i - 1]) for i in range(1, len(ro_gos)))]
        with m.If(ro_go):
            m.d.sync += [ro_active.eq(1), ro_ptr.eq(0), ro_chunk.eq(0),
                         ro_first.eq(1), ro_last.eq(C == 1), ro_vleft.eq((1 << V) - 1),
                         ro_mptr.eq(Mux(ro_bank, C + E, C)),
                         ro_flags.eq(Mux(ro_bank, vflag[1], vflag[0]))]
        with m.Elif(ro_drop):
            m.d.sync += cursor.eq(d_cur)
        with m.Elif(ro_issue):
            m.d.sync += [ro_ptr.eq(ro_ptr + Mux(ro_zero, C, 1)),
                         ro_mptr.eq(ro_mptr + Mux(ro_zero, C, 1))]
            with m.If(vec_end):
                m.d.sync += [ro_chunk.eq(0), ro_first.eq(1), ro_last.eq(C == 1),
                             ro_flags.eq(ro_flags >> 1), ro_vleft.eq(ro_vleft >> 1)]
            with m.Else():
                m.d.sync += [ro_chunk.eq(ro_chunk + 1), ro_first.eq(0),
                             ro_last.eq(ro_chunk == C - 2)]
        # done when the bank's last beat is delivered (nothing is in flight behind it): the
        # readout is free the next cycle, its last flag clear lands with that edge
        done = deliver & q_final
        m.d.sync += ro_free.eq((~Cat(*ro_gos).any() & ~ro_active & ~ro_inflight & ~swap) | done)
        with m.If(done):
            m.d.sync += ro_active.eq(0)
            if compact:
                # every vector flag of the bank has been read: clear them for its next step
                for k in range(2):
                    with m.If(ro_bank == k):
                        m.d.sync += vflag[k].eq(0)
        m.d.sync += [ro_v[0].eq(ro_issue), ro_z[0].eq(ro_zero), ro_f[0].eq(ro_final),
                     ro_cur[0].eq(cursor), ro_drop.eq(drop), d_cur.eq(q_cur)]
        for i in range(1, ro_lat):
            m.d.sync += [ro_v[i].eq(ro_v[i - 1] & ~ro_drop), ro_z[i].eq(ro_z[i - 1]),
                         ro_f[i].eq(ro_f[i - 1]),
                         ro_cur[i].eq(ro_cur[i - 1])]
        with m.If(drop):                # (the item behind it must not be delivered next cycle)
            m.d.sync += q_valid.eq(0)
        # an untouched word reads as 0: synchronous reset taking priority over the enable (the
        # ECP5 FF's LSR), not a gate in front of the register
        with m.If(adv_o):
            m.d.sync += [o_valid.eq(q_valid), o_zero.eq(q_zero)]
        # The output register spans every lane (and the chip): per group of O_GROUP_BITS bits, a
        # copy of o_valid makes the group's enable locally (~o_valid | ready) and a copy of the
        # word's "read as 0" bit (along the readout stages, copied in Q) its reset
        # the word's "read as 0" bit, from the flag read with the issue (distributed RAM: at
        # once; block RAM: out in stage 3), along the stages to RO_LAT - 1
        if lut_flags:
            fs, ro_touched = 0, Mux(ro_bank, flags[1][2].data, flags[0][2].data)
            m.d.sync += ro_c[0].eq(~ro_touched | ro_zero)
        else:
            fs, ro_touched = 3, Mux(ro_bank, flags[1].r_data, flags[0].r_data)
            m.d.sync += ro_c[fs].eq(~ro_touched | ro_z[fs - 1])
        m.d.sync += [ro_c[i].eq(ro_c[i - 1]) for i in range(fs + 1, ro_lat)]
        p_clr = ro_c[-2]
        # (a copy is cleared one cycle after o_valid by a clear: nothing is loaded meanwhile)
        o_clr = Signal(init=1)
        m.d.sync += o_clr.eq(self.clear | clearing)
        o_flat, q_flat = o_data.as_value(), q_data.as_value()
        for g, lo in enumerate(range(0, P * W, O_GROUP_BITS)):
            bits = slice(lo, min(P * W, lo + O_GROUP_BITS))
            ov = Signal(name=f"o_valid_g{g}_q")
            m.d.comb += ov.eq(kept_reg(m, Mux(~ov | self.o_stream.ready, q_valid, ov) & ~o_clr,
                                       target=self.carry_target, name=f"o_valid_g{g}"))
            clr = kept_reg(m, p_clr, target=self.carry_target, name=f"q_clr_g{g}")
            adv_g = ~ov | self.o_stream.ready
            with m.If(adv_g):
                m.d.sync += o_flat[bits].eq(q_flat[bits])
            with m.If(adv_g & clr):
                m.d.sync += o_flat[bits].eq(0)
        # (the cursor's address is registered once more: the register feeding every column's
        # address register sits among them, the cursor logic stays where it is)
        ro_raddr = ro_mptr
        for i in range(ro_lat - 3):
            ro_raddr_q = Signal.like(ro_mptr, name=f"ro_raddr{i}")
            m.d.sync += ro_raddr_q.eq(ro_raddr)
            ro_raddr = ro_raddr_q
        m.d.comb += [acc_ro.r_addr.eq(ro_raddr), self.o_stream.valid.eq(o_valid)]
        if compact:
            m.d.comb += [self.o_stream.payload.lanes.eq(o_data),
                         self.o_stream.payload.zero.eq(o_zero)]
        else:
            m.d.comb += self.o_stream.payload.eq(o_data)

        # ---- vector flags (compact readout): set when an event's first item issues ----------
        if compact:
            for k in range(2):
                with m.If(issue & ev_first & (acc_bank == k)):
                    m.d.sync += vflag[k].bit_select(ev_vec, 1).eq(1)

        # ---- flags: read with the item in S0 (accumulate, registered into A) and with the
        # readout's issue (registered into stage 1); set by the item in A, cleared by a
        # delivered readout word and by the clear pass (writes land at the end of the cycle) ---
        # (block RAM: one read port, the accumulate path's in the bank it accumulates, else
        # the readout's; the write address registered, landing at the end of B with B's data)
        # (a delivered word's flag clear is registered first: ``o_stream.ready`` reaches no RAM)
        z_en, z_addr = [Signal(name=f"z_en{k}") for k in range(2)], Signal.like(q_ptr)
        m.d.sync += [z_addr.eq(q_ptr),
                     *(z_en[k].eq(deliver & ~q_zero & (ro_bank == k)) for k in range(2))]
        for k, fl in enumerate(flags):
            if lut_flags:
                wp, rp_acc, rp_ro = fl
                w_addr, w_data, w_en = wp.addr, wp.data, wp.en
                m.d.comb += [rp_acc.addr.eq(ev_aaddr), rp_ro.addr.eq(ro_ptr), w_data.eq(a_bank == k)]
            else:
                w_addr, w_data, w_en = fl.w_addr, fl.w_data, fl.w_en
                m.d.comb += [fl.r_addr.eq(Mux(acc_bank == k, ev_aaddr, ro_ptr)),
                             w_data.eq(b_valid & (b_bank == k))]
            # (a bias item sets its bank-0 flag and clears the bank-1 flag of the same word; a
            # readout clear writes 0: it is never presented with a set of the same bank)
            with m.If(a_valid & ((a_bank == k) | a_bias)):
                m.d.comb += [w_addr.eq(a_addr), w_en.eq(1)]
            with m.Elif(z_en[k]):
                m.d.comb += [w_addr.eq(z_addr), w_en.eq(1)]
                if lut_flags:
                    m.d.comb += w_data.eq(0)
        if lut_flags:
            m.d.sync += [a_flag.eq(Mux(acc_bank, flags[1][1].data, flags[0][1].data)),
                         b_flag.eq(a_flag), c_flag.eq(b_flag)]
        else:
            m.d.comb += c_flag.eq(Mux(c_bank, flags[1].r_data, flags[0].r_data))
        m.d.sync += d_flag.eq(c_flag)

        # ---- clear pass: E bias items into bank 0 (through the adder), bank 1 flags zeroed ----
        pipe_empty = ~a_valid & ~b_valid & ~c_valid & ~d_valid & ~e_valid & ~f_valid
        with m.If(clr_issue & (ev_aaddr == E - 1)):
            m.d.sync += clr_run.eq(0)
        with m.If(clearing & ~clr_run & pipe_empty):
            m.d.sync += clearing.eq(0)
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clr_run.eq(1), ev_aaddr.eq(0), ev_chunk.eq(0),
                         ev_m0.eq(C), ev_m1.eq(C + E), ev_first.eq(1),
                         a_valid.eq(0), b_valid.eq(0), c_valid.eq(0), d_valid.eq(0),
                         e_valid.eq(0), f_valid.eq(0)]
        with m.If(self.clear | clearing):
            if compact:
                # the bias (bank 0) touches every vector on the first step, if it is not all 0
                m.d.sync += [vflag[0].eq(((1 << V) - 1) * bias_touch), vflag[1].eq(0)]
            m.d.comb += nv_valid.eq(0)
            m.d.sync += [acc_bank.eq(0), ev_had.eq(0), hz.eq(0), ib_v.eq(0), ib_skid_v.eq(0),
                         ro_active.eq(0), o_valid.eq(0), *(r.eq(0) for r in (*ro_gos, *z_en))]
            m.d.sync += [v.eq(0) for v in (*ro_v, ro_drop)]
        with m.If(self.clear):
            m.d.comb += nv_last.eq(C == 1)
        m.d.sync += [ev_valid.eq(nv_valid), ev_eos.eq(nv_eos), last_chunk.eq(nv_last)]
        # the decodes' next values: from the next state (C = 1), or written out for C > 1 with
        # the invariants that make them shallow (an event's last item never stalls, mid_ev
        # excludes last_chunk, ...), checked against the state in simulation
        flags_ = (can_take, eos_w, act, mid_ev, ld_ok)

        def decode(valid, eos, last) -> list:
            return [~valid | ~eos & last, valid & eos, valid & ~eos, valid & ~eos & ~last,
                    ~valid | eos | last]
        nxt = decode(nv_valid, nv_eos, nv_last)
        if C > 1:
            clr_any, inc_ev, pen = self.clear | clearing, mid_ev & ~hazard, ev_chunk == C - 2
            nxt = [clr_any | ~take & (swap | Mux(inc_ev, pen, can_take)),
                   ~clr_any & Mux(take, ib.eos, eos_w & ~ro_free),
                   ~clr_any & Mux(take, ~ib.eos, act & ~(last_chunk & ~hazard)),
                   ~clr_any & Mux(take, ~ib.eos, Mux(inc_ev, ~pen, mid_ev)),
                   clr_any | Mux(take, ib.eos, Mux(inc_ev, pen, ld_ok))]
        m.d.sync += [flag.eq(n) for flag, n in zip(flags_, nxt, strict=True)]
        if self.check_invariants:
            for flag, state in zip(flags_, decode(ev_valid, ev_eos, last_chunk), strict=True):
                m.d.comb += Assert(flag == state, f"engine: decode {flag.name} differs from the state")
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
    bench engine``: 70.6 % end-to-end vs 95.3 % engine utilization on the qkv layer). The
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
                               # (iCE40 has no LUT RAM: flags in flip-flops are its slowest path)
                               flag_ram="block" if p.get("family") == "ice40" else None,
                               ram_target="ecp5" if p.get("family") == "ecp5" else "generic",
                               carry_target="ecp5" if p.get("family") == "ecp5" else "generic")


#: picked up by ``equispike synth`` (rtl/synth.py): name -> (factory, defaults, lane sweep)
SYNTH_BLOCKS = {
    "engine": (_synth_engine, {"lanes": 64, "n_in": 64, "n_out": 192, "n_vectors": 17},
               [{"lanes": 16}, {"lanes": 32}, {"lanes": 64}]),
}


def _any(terms):
    """OR of ``terms`` (0 if there are none)."""
    out = C_(0, 1)
    for t in terms:
        out = out | t
    return out
