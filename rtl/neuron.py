"""Pipelined P-lane neuron array: ST-BIF (SPEC §2) or binary LIF (SPEC §8), state in memory."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import C, Cat, Module, Mux, ResetSignal, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._bram import RAM_TARGETS, RegisteredRAM
from ._carry import CARRY_TARGETS, fused_add, kept_reg
from ._util import ceil_div, check_int, pack_lanes

__all__ = ["NeuronArray", "ConfigPort", "OUT_QUEUE_DEPTH"]

# per-bit operand selects of the fused adders (rtl/_carry.py: written with & | ^, t(b, 0, 0) = 0)
# the membrane of the state word: b = k, c = H_i, d = D_i (V = H if k else D)
_SEL_STATE = lambda b, c, d: (b & c) | ((b ^ 1) & d)  # noqa: E731
# I or 0: b = clear, c = I_i
_SEL_ZERO = lambda b, c, d: (b ^ 1) & c  # noqa: E731
# Θ if H < 0 else ~Θ: b = Θ_i, c = H's sign, d = 1 (see fused_add)
_SEL_PM_THETA = lambda b, c, d: d & (b ^ c ^ 1)  # noqa: E731
# a plain b: b = the addend, d = 1
_SEL_PLAIN = lambda b, c, d: b & d  # noqa: E731
# no second operand (a + carry in)
_SEL_NONE = lambda b, c, d: 0  # noqa: E731

#: Output queue depth (a power of two): more than the 16-cycle input-to-output latency, so that
#: the array runs at one beat per cycle without back-pressure reaching the (stall-free) pipeline.
OUT_QUEUE_DEPTH = 32


class ConfigPort(wiring.Signature):
    """Write port of the per-lane parameter memory: ``addr``, ``data`` (one entry), ``en``."""

    def __init__(self, depth: int, entry_layout):
        super().__init__({
            "addr": Out(range(max(depth, 2))),
            "data": Out(entry_layout),
            "en": Out(1),
        })


class NeuronArray(wiring.Component):
    """Array of ``n_neurons`` ST-BIF or LIF neurons computed on ``lanes`` parallel lanes.

    What it computes
    ----------------
    Neuron ``i`` lives in lane ``i % lanes`` of beat ``i // lanes``. A time step is
    ``beats = ceil(n_neurons / lanes)`` input beats on ``i_stream`` (one signed current per lane,
    in neuron order) and the same number of output beats on ``o_stream`` (one 2-bit signed spike
    per lane). Lanes past ``n_neurons`` in the last beat output 0.

    * ``mode="stbif"`` (SPEC §2): ``H = V + I``; ``s = +1`` if ``H >= Θ and S < Qp``, ``-1`` if
      ``H < 0 and S > Qn``, else 0; ``V = H - s·Θ``; ``S += s``. Cleared state
      ``V = floor(Θ/2)``, ``S = 0``.
    * ``mode="lif"`` (SPEC §8, τ = 2, hard reset): ``h = (V + I) >> 1``; ``s = h >= Θ``;
      ``V = 0 if s else h``. Cleared state ``V = 0``. Spikes are 0/1.

    The neuron rule itself is defined in ``equispike.model.neurons``; this is its hardware form,
    checked bit for bit against it.

    Parameters per lane (Θ, and Qn/Qp in ST-BIF mode) come from a small memory of
    ``param_depth`` entries of ``lanes`` lanes; beat ``b`` of a step uses entry
    ``b % param_depth``. With per-channel thresholds over ``C`` channels on the last axis and
    ``C % lanes == 0``, ``param_depth = C // lanes`` gives every neuron its channel's Θ;
    ``param_depth = beats`` gives a per-neuron Θ. A memory rather than ports because the number
    of distinct Θ per layer (channels) exceeds the lane count and maps to one block/LUT RAM;
    it is filled at generation time (``theta``, ``qn``, ``qp``) and/or through the ``cfg``
    write port (write it, then pulse ``clear``: the cleared membrane depends on Θ). The ``cfg``
    address space has :attr:`config_depth` words: the entries, and in ST-BIF mode from
    :attr:`clear_bank` on one more word per entry holding ``floor(Θ/2) + 1`` in its Θ fields;
    :meth:`config_words` gives every word to write. (The clear pass adds that value where an
    update adds Θ, so the cleared membrane costs no multiplexer per lane; the array does not
    derive it from Θ itself for the same reason.)

    Pipeline and timing
    -------------------
    Stages (one cycle each, no enables, no stalls once accepted):

    * A: the beat is accepted (current registered);
    * A2: each group's word counter holds the beat's word (it advances at the end of A2, enabled
      by the group's own copy of the valid bit);
    * A3: the read-address registers (one per block-RAM column);
    * A4: the block RAMs' read registers;
    * R: the RAM output register (inside the block RAM with ``ram_target="ecp5"``) and the
      current register;
    * RF, R2: both registered twice more in the fabric (the block RAMs of a wide array sit far
      from the lanes' logic);
    * H: ``H = V + I`` (one adder per lane; a clear beat: ST-BIF ``H = -1``, LIF adds 0
      instead of ``I``), the tracer flags ``S != Qp`` / ``S != Qn``;
    * E: ``D = H - Θ`` if ``H >= 0`` else ``H + Θ`` (one adder, registered; on ECP5 both operand
      selects sit inside the ``CCU2C`` carry chain, see ``carry_target``);
    * W: fires from D's sign (``+1``) or H's sign (``-1``) and the tracer flags; D, H and
      ``k`` (did not fire) are registered with the spikes: the state word keeps both (``V = H``
      if ``k`` else ``D``), and the next update's H adder makes that select inside its carry chain
      on ECP5 (block-RAM bits instead of a LUT per membrane bit; elsewhere the select is a
      multiplexer into R2);
    * B, B2: the state word (``S += s`` on the way) is registered twice on its way to the block
      RAM; the word is written in B2. The spikes are registered once more in B and written into
      the output queue in B2 (its write address and enable registered per block-RAM column).

    Latency :data:`LATENCY` = 16 cycles from input transfer to output valid (including the
    output queue: a block RAM read through a per-column address register and its output
    register into a fabric output register, so that ``o_stream``'s ``ready`` drives only that
    register's clock enable and the queue pointers). A word is written back 12 cycles after its
    beat is accepted and read 3 cycles after: with ``beats >= HAZARD_FREE_BEATS`` (10) per step
    the next access to it is always later (one beat per cycle, no hazard logic). With fewer beats
    a beat whose word is still in flight is held back (``i_stream.ready`` low, the word re-read
    every cycle): one step per 10 cycles. ``o_stream`` back-pressure never stalls the pipeline: a
    beat is accepted only while the ``OUT_QUEUE_DEPTH``-entry spike queue (2 bits per lane) has
    room for it, which covers the latency at full rate. Under back-pressure the queue's output
    may pause: a head word that reaches the output register while it is full and not ready is
    read again, so ``o_stream.valid`` may drop for up to four cycles after a stall (same order
    and contents).

    ``clear`` (one-cycle strobe) and reset drop any beat in flight and start a clear pass of about
    ``beats + 13`` cycles: ``beats`` clear beats go down the same pipeline, their state words zeroed
    in R2; ST-BIF: H is set to -1 and Θ read from the clear bank, so that D = -1 + floor(Θ/2) + 1
    and the write-back takes D (k reset) without a spike; LIF: 0 is added instead of the current,
    which never fires (Θ >= 1). The normal write-back leaves the cleared state
    (``V = floor(Θ/2)`` resp. 0, ``S = 0``); then the array restarts at beat 0. ``busy`` is high
    and ``i_stream.ready`` low meanwhile.

    Memories and counters are at least 2 deep (no zero-width addresses in the Verilog).

    Parameters
    ----------
    lanes : int
        Number of parallel lanes ``P`` (1..256).
    n_neurons : int
        Neurons per time step (>= 1).
    mode : {"stbif", "lif"}
        Neuron type, fixed at generation time.
    current_width : int
        Signed width of an input current (2..48).
    membrane_width : int
        Signed width of the membrane ``V`` (3..48); thresholds are ``membrane_width - 1``-bit
        unsigned. Take it from the width analysis (``model.widths``): overflow is then impossible.
    levels : int
        Largest quantizer level count supported (power of two, 2..256); sets the tracer width.
    param_depth : int
        Entries of the parameter memory (1..beats). ST-BIF: Θ is always in a block RAM (the
        entries and the clear bank), Qn/Qp in a register with one entry, else in a RAM; LIF: Θ
        in a register with one entry, else in a RAM.
    theta, qn, qp : array-like, optional
        Initial parameters, broadcastable to ``(param_depth, lanes)``.
    ram_target : {None, "generic", "ecp5"}
        Form of the state and parameter RAMs (:class:`~equispike.rtl._bram.RegisteredRAM`):
        ``None`` simulation (read/write collisions poisoned), ``"generic"`` inferred,
        ``"ecp5"`` block RAM primitives (``DP16KD``/``PDPW16KD``) with their output register as
        the stage-R register.
    carry_target : {None, "generic", "ecp5"}
        Form of the two ST-BIF adders with an operand select
        (:func:`~equispike.rtl._carry.fused_add`): ``"ecp5"`` computes the select inside the
        ``CCU2C`` carry chain (no LUT per bit for it), otherwise plain Amaranth arithmetic.
    state_select : bool, optional
        ST-BIF state form. ``True``: the state word keeps both results of an update, D and H,
        and ``k`` (did not fire); the next update selects ``V = H if k else D`` (inside its
        carry chain with ``carry_target="ecp5"``: no LUT per membrane bit, twice the state RAM
        bits). ``False``: the state word keeps ``V``, selected by a multiplexer per bit after
        the update (fewer RAM bits: the form for iCE40, whose UP5K has 30 small block RAMs).
        Default: ``True`` exactly with ``carry_target="ecp5"``.
    state_group_lanes : int
        Lanes per state RAM (default 8). Each group's RAM has its own address registers: one
        address register fanning out to every block-RAM column of a 64-lane array is a
        7-ns net on ECP5.
    """

    #: steps of at least this many beats never wait for a write-back (one beat per cycle); a
    #: shorter step costs this many cycles (hazard stall)
    HAZARD_FREE_BEATS = 10
    #: cycles from an input beat's transfer to its output beat's ``valid`` (no back-pressure)
    LATENCY = 16

    def __init__(self, *, lanes: int, n_neurons: int, mode: str = "stbif", current_width: int,
                 membrane_width: int, levels: int = 16, param_depth: int = 1,
                 theta=None, qn=None, qp=None, ram_target: str | None = None,
                 state_group_lanes: int = 8, carry_target: str | None = None,
                 state_select: bool | None = None):
        if ram_target not in RAM_TARGETS:
            raise ValueError(f"ram_target must be one of {RAM_TARGETS}, got {ram_target!r}")
        self.ram_target = ram_target
        if carry_target not in CARRY_TARGETS:
            raise ValueError(f"carry_target must be one of {CARRY_TARGETS}, got {carry_target!r}")
        self.carry_target = carry_target
        if state_select not in (None, True, False):
            raise ValueError(f"state_select must be None, True or False, got {state_select!r}")
        self.state_select = (carry_target == "ecp5") if state_select is None else state_select
        self.state_group_lanes = check_int("state_group_lanes", state_group_lanes, 1, 256)
        self.lanes = check_int("lanes", lanes, 1, 256)
        self.n_neurons = check_int("n_neurons", n_neurons, 1)
        if mode not in ("stbif", "lif"):
            raise ValueError(f"mode must be 'stbif' or 'lif', got {mode!r}")
        self.mode = mode
        self.current_width = check_int("current_width", current_width, 2, 48)
        self.membrane_width = check_int("membrane_width", membrane_width, 3, 48)
        self.levels = check_int("levels", levels, 2, 256)
        if self.levels & (self.levels - 1):
            raise ValueError(f"levels must be a power of two, got {levels}")
        self.beats = ceil_div(self.n_neurons, self.lanes)
        self.param_depth = check_int("param_depth", param_depth, 1, self.beats)
        self.theta_width = self.membrane_width - 1
        self.tracer_width = self.levels.bit_length()  # holds [-L/2, L-1]

        fields = {"theta": unsigned(self.theta_width)}
        if mode == "stbif":
            fields.update(qn=signed(self.tracer_width), qp=signed(self.tracer_width))
        self.lane_param = data.StructLayout(fields)
        self.param_layout = data.ArrayLayout(self.lane_param, self.lanes)
        # ST-BIF: a second bank of Θ entries from CLEAR_BANK on (see config_words)
        self.clear_bank = 1 << (self.param_depth - 1).bit_length() if mode == "stbif" else None
        self.config_depth = (self.clear_bank + self.param_depth if mode == "stbif"
                             else self.param_depth)
        self.param_init = self.config_words(theta, qn, qp)

        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(signed(self.current_width),
                                                             self.lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(signed(2), self.lanes))),
            "clear": In(1),
            "busy": Out(1),
            "cfg": In(ConfigPort(self.config_depth, self.param_layout)),
        })

    def config_words(self, theta, qn, qp) -> list[int]:
        """The parameter memory's contents for ``theta``, ``qn``, ``qp`` (broadcastable to
        ``(param_depth, lanes)``): word ``a`` is what to write through ``cfg`` at address ``a``
        (``cfg.data`` as an integer), for every ``a`` in ``range(config_depth)``.

        Words ``0 .. param_depth - 1`` hold the entries (Θ, Qn, Qp per lane). In ST-BIF mode
        words ``clear_bank + d`` hold, in their Θ fields, ``floor(Θ/2) + 1`` of entry ``d``
        (their Qn/Qp fields are not used): the value a clear beat adds in place of Θ, so that
        the cleared membrane floor(Θ/2) comes out of the update's own adder (see the class
        docstring). ``theta=None``: all zero (to be written through ``cfg`` before a clear).
        """
        D = self.param_depth
        shape = (D, self.lanes)
        if theta is None:
            return [0] * self.config_depth
        th = np.broadcast_to(np.asarray(theta, dtype=np.int64), shape)
        if th.min() < 1 or th.max() >= 1 << self.theta_width:
            raise ValueError(f"theta must be in [1, {(1 << self.theta_width) - 1}] for "
                             f"membrane_width {self.membrane_width}, got [{th.min()}, {th.max()}]")
        stbif = self.mode == "stbif"
        if stbif:
            if qn is None or qp is None:
                raise ValueError("qn and qp are required with theta in stbif mode")
            lo, hi = -(1 << (self.tracer_width - 1)), (1 << (self.tracer_width - 1)) - 1
            qn_a = np.broadcast_to(np.asarray(qn, dtype=np.int64), shape)
            qp_a = np.broadcast_to(np.asarray(qp, dtype=np.int64), shape)
            if (qn_a > 0).any() or (qp_a < 0).any() or (qn_a >= qp_a).any() \
                    or qn_a.min() < lo or qp_a.max() > hi:
                raise ValueError(f"bounds must satisfy {lo} <= qn <= 0 <= qp <= {hi}, qn < qp "
                                 f"(levels {self.levels})")
        lw, tw, sw = self.lane_param.size, self.theta_width, self.tracer_width
        words = [0] * self.config_depth
        for d in range(D):
            lanes, clear = [], []
            for lane in range(self.lanes):
                v = int(th[d, lane])
                if stbif:
                    v |= (int(qn_a[d, lane]) & ((1 << sw) - 1)) << tw
                    v |= (int(qp_a[d, lane]) & ((1 << sw) - 1)) << (tw + sw)
                    clear.append(int(th[d, lane]) // 2 + 1)
                lanes.append(v)
            words[d] = pack_lanes(lanes, lw)
            if stbif:
                words[self.clear_bank + d] = pack_lanes(clear, lw)
        return words

    def elaborate(self, platform):
        m = Module()
        P, vw, cw, sw = self.lanes, self.membrane_width, self.current_width, self.tracer_width
        B = self.beats
        D = self.param_depth
        stbif = self.mode == "stbif"
        # ST-BIF: both results of the last update, D and H, and k = "kept H" (it did not fire:
        # V = H if k else D): the select happens inside the next update's carry chain (below)
        sel = stbif and self.state_select
        lane_state = data.StructLayout(
            {"d": signed(vw), "h": signed(vw), "k": unsigned(1), "s": signed(sw)} if sel
            else {"v": signed(vw), "s": signed(sw)} if stbif else {"v": signed(vw)})
        state_layout = data.ArrayLayout(lane_state, P)
        cur_layout = data.ArrayLayout(signed(cw), P)
        spk_layout = data.ArrayLayout(signed(2), P)
        abits = range(max(B, 2))
        hw = max(vw, cw) + 1                        # H = V + I and D = H -/+ Θ (see below)

        # ---- memories ------------------------------------------------------------------------
        # state: block RAMs read through their output registers (stage R's state register), one
        # per group of ``state_group_lanes`` lanes, with registered addresses (``addr_regs``: one
        # copy per block-RAM column, no write-enable net), fed by counters kept per group: one
        # address register driving every column of a wide array is a 7-ns net on ECP5.
        G = self.state_group_lanes

        def plus_one(v: Value, name: str) -> Value:
            # the group counters' increments: on ECP5 a fused_add chain (it starts with a carry-in
            # half; a Yosys adder chain gets an extra feed-in CCU2C from nextpnr, 2 LUT4 each)
            return fused_add(m, len(v), v, 0, 0, 0, _SEL_NONE, 1, target=self.carry_target,
                             name=name)

        groups = [(lo, min(P, lo + G)) for lo in range(0, P, G)]
        lane_bits = lane_state.size
        state_rams, rd_ctr, wr_ctr = [], [], []
        for gi, (lo, hi) in enumerate(groups):
            ram = RegisteredRAM(unsigned((hi - lo) * lane_bits), max(B, 2), target=self.ram_target,
                                addr_regs=2, read_addr_regs=1)
            m.submodules[f"state{gi}"] = ram
            state_rams.append(ram)
            rd_ctr.append(Signal(range(max(B, 2)), name=f"rd_beat{gi}"))
            wr_ctr.append(Signal(range(max(B, 2)), name=f"wr_beat{gi}"))

        # ---- control -------------------------------------------------------------------------
        running = Signal()          # 0 after reset: clear pass first
        hazard = Signal()           # the next beat's word is still in flight (see below)
        clr_go = Signal()           # a clear beat issues this cycle (see below)
        issue = Signal()            # a beat (input or clear) enters stage R this cycle
        accept = Signal()           # ... and it is an input beat
        beat = Signal(abits)        # word of the next beat
        beat_nx = Signal(abits)
        pidx = Signal(range(max(D, 2)))
        pidx_nx = Signal(range(max(D, 2)))
        last = beat == B - 1
        m.d.comb += [
            beat_nx.eq(Mux(issue, Mux(last, 0, beat + 1), beat)),
            pidx_nx.eq(Mux(issue, Mux(last | (pidx == D - 1), 0, pidx + 1), pidx)),
        ]
        m.d.sync += [beat.eq(beat_nx), pidx.eq(pidx_nx)]
        pidx_a = Signal.like(pidx, reset_less=True)
        pidx_a2 = Signal.like(pidx, reset_less=True)
        pidx_a3 = Signal.like(pidx, reset_less=True)
        m.d.sync += [pidx_a.eq(pidx), pidx_a2.eq(pidx_a), pidx_a3.eq(pidx_a2)]

        # ---- parameters ----------------------------------------------------------------------
        # Θ: a block RAM read a stage after the state (the beat's Θ is in th_rf while the beat is
        # in RF), except LIF with one entry (a register). ST-BIF clear beats read the clear bank
        # (config_words). Qn/Qp (ST-BIF): a register with one entry, else a RAM read with Θ.
        tw, lw = self.theta_width, self.lane_param.size
        kb = (D - 1).bit_length()                   # entry address bits

        def word_fields(word: int, lo: int, hi: int) -> int:
            return pack_lanes([(word >> (lane * lw + lo)) & ((1 << (hi - lo)) - 1)
                               for lane in range(P)], hi - lo)

        cfg_word = self.cfg.data.as_value()

        def cfg_fields(lo: int, hi: int) -> Value:
            return Cat(*[cfg_word[lane * lw + lo:lane * lw + hi] for lane in range(P)])

        theta_layout = data.ArrayLayout(unsigned(tw), P)
        w_theta = Signal(theta_layout, reset_less=True)     # Θ of the beat in H
        theta_mem = None
        if stbif or D > 1:
            # (its read address registered per block-RAM column: read_addr_regs=1, written
            # unregistered; one register fanning out to every column of a wide Θ RAM is a
            # 6.5-ns net on ECP5)
            m.submodules.theta_mem = theta_mem = RegisteredRAM(
                unsigned(P * tw), self.config_depth, target=self.ram_target, read_addr_regs=1,
                init=[word_fields(w, 0, tw) for w in self.param_init])
            th_r2 = Signal(theta_layout, reset_less=True)
            m.d.comb += [theta_mem.w_addr.eq(self.cfg.addr), theta_mem.w_data.eq(cfg_fields(0, tw)),
                         theta_mem.w_en.eq(self.cfg.en)]
            m.d.sync += [th_r2.eq(theta_mem.r_data), w_theta.eq(th_r2)]
        else:
            prm_theta = Signal(unsigned(P * tw), init=word_fields(self.param_init[0], 0, tw))
            with m.If(self.cfg.en):
                m.d.sync += prm_theta.eq(cfg_fields(0, tw))
            m.d.comb += w_theta.eq(prm_theta)
        bounds_layout = data.ArrayLayout(
            data.StructLayout({"qn": signed(self.tracer_width), "qp": signed(self.tracer_width)}), P)
        r2_bounds = Signal(bounds_layout, reset_less=True)  # Qn, Qp of the beat in R2
        if stbif:
            b_en = self.cfg.en & ~self.cfg.addr[kb]         # an entry, not the clear bank
            if D == 1:
                prm_bounds = Signal(unsigned(bounds_layout.size),
                                    init=word_fields(self.param_init[0], tw, lw))
                with m.If(b_en):
                    m.d.sync += prm_bounds.eq(cfg_fields(tw, lw))
                m.d.comb += r2_bounds.eq(prm_bounds)
            else:
                m.submodules.bounds_mem = bounds_mem = RegisteredRAM(
                    unsigned(bounds_layout.size), D, target=self.ram_target, read_addr_regs=1,
                    init=[word_fields(w, tw, lw) for w in self.param_init[:D]])
                m.d.comb += [bounds_mem.w_addr.eq(self.cfg.addr[:kb]),
                             bounds_mem.w_data.eq(cfg_fields(tw, lw)), bounds_mem.w_en.eq(b_en),
                             bounds_mem.r_addr.eq(pidx_a3)]
                m.d.sync += r2_bounds.eq(bounds_mem.r_data)

        # ---- output queue (credit based: a beat is accepted only if its spikes have room) ----
        # Block RAM of OUT_QUEUE_DEPTH 2-bit-per-lane words, read through its output register
        # (RegisteredRAM, latency 2) into a fabric output register ``q_out``, the payload. The
        # RAM's pins are driven by registers only (read address ``q_a``, enables tied high):
        # ``o_stream.ready`` reaches nothing but the clock enable of ``q_out`` (local) and the
        # pointer logic. Reads are issued ahead of the head ``q_h`` (one per cycle while words are
        # present), assuming each arriving head word is taken; a head word that arrives while
        # ``q_out`` is full and not ready (a miss) is dropped and the reads restart at the head.
        # Pointers carry a lap bit; a read's address (tag) travels with it and the word is taken
        # only if the tag is the head when it arrives (``q_hit``, registered a cycle ahead).
        Q = OUT_QUEUE_DEPTH
        qbits = range(2 * Q)
        # The spikes reach it registered twice after W (b_spk), and its addresses and write enable
        # are registered once more per block-RAM column (``addr_regs=1``; reads: latency 3): the
        # lanes of a wide array are spread far from the queue's block RAMs, and the pointer logic
        # should not sit next to all of them.
        m.submodules.oq = oq = RegisteredRAM(unsigned(spk_layout.size), Q, target=self.ram_target,
                                             addr_regs=1)
        q_wp = Signal(qbits)                        # next word to write (presented to the RAM)
        q_h = Signal(qbits)                         # head: next word for q_out
        q_h1 = Signal(qbits, init=1)                # q_h + 1
        q_h2 = Signal(qbits, init=2)                # q_h + 2
        # q_t2 == q_h and q_t2 == q_h1 (address bits), registered: computed a cycle ahead from
        # q_t1 and the next head, so that q_hit is one select after q_load
        t_eq0, t_eq1 = Signal(name="t_eq0"), Signal(name="t_eq1")
        q_a = Signal(qbits)                         # next word read (registered RAM address)
        q_a1 = Signal(qbits, init=1)                # q_a + 1
        q_v1, q_t1 = Signal(name="q_v1"), Signal(qbits, name="q_t1")  # read one cycle ago: valid, tag
        q_v2, q_t2 = Signal(name="q_v2"), Signal(qbits, name="q_t2")  # ... two cycles ago
        q_hit = Signal()                            # the RAM output is the head word
        q_valid = Signal()
        q_out = Signal(unsigned(spk_layout.size), reset_less=True)
        q_wr = Signal()                             # w_valid & running (registered)
        q_load = Signal()
        q_miss = Signal()
        # word q_a written at an earlier edge (a write lands one cycle after q_wp passes it):
        # q_a != q_wp of the cycle before, a register computed from the registers q_a, q_a1 and
        # q_wp (no compare between the pointer registers and their enables). After a miss (q_a
        # restarts at the head q_h <= q_a) it may be pessimistic for a cycle: it says whether the
        # word the reads would have gone on to (q_a1 or q_a) was written, and q_h is not after
        # it; a "no" costs a cycle, after which it compares the head (q_a == q_h) itself. A
        # bubble at most, under back-pressure only, for logic without a third compare (q_h) and
        # the miss select: they were the UP5K's critical path (6 LUT levels as abc9 mapped them).
        # The pointers compared are never a whole lap apart (q_h <= q_a <= q_wp and q_wp - q_h <=
        # occ < Q, see ``room``): their address bits decide, without the lap bit (one LUT level
        # less).
        q_ok = Signal()
        q_h_nx = Signal(qbits)
        occ = Signal(range(Q + 2))                  # beats accepted and not yet delivered
        # room for a beat: occ < Q - 2 one cycle ago, so occ < Q now (at most one beat accepted
        # since); a register, so that accepting is one LUT from registers and ports
        room = Signal(init=1)
        m.d.sync += room.eq(occ < Q - 2)
        e_valid = Signal()                          # (pipeline stage E, below)
        deliver = self.o_stream.valid & self.o_stream.ready
        m.d.comb += [self.o_stream.valid.eq(q_valid), self.o_stream.payload.eq(q_out),
                     q_load.eq(q_hit & (~q_valid | self.o_stream.ready)),
                     q_miss.eq(q_hit & ~q_load),
                     q_h_nx.eq(Mux(q_load, q_h1, q_h)),
                     oq.r_addr.eq(q_a[:-1])]
        # q_out's clock enable is a net of its own, apart from the pointer logic's q_load (the
        # pointer logic and the 2·P enables then place apart): ~q_valid | ready from q_idle, a
        # register equal to ~q_valid (kept apart: Yosys does not merge it with q_valid). A word
        # loaded without a hit is never valid. The enable takes a kept copy of q_idle: with
        # q_idle itself, synthesis shares the LUT ``q_idle | ready`` between the enable (placed
        # by the 2·P flip-flops) and q_idle's next state (a long route back).
        q_idle = Signal(init=1)
        q_idle_ce = kept_reg(m, (q_idle | self.o_stream.ready) & ~q_hit,
                             rst=self.clear | ResetSignal(), init=1,
                             target="ecp5" if "ecp5" in (self.ram_target, self.carry_target)
                             else None, name="q_idle_ce")
        with m.If(q_idle_ce | self.o_stream.ready):
            m.d.sync += q_out.eq(oq.r_data)
        with m.If(self.clear):
            m.d.sync += [q_wp.eq(0), q_h.eq(0), q_h1.eq(1), q_h2.eq(2), q_a.eq(0), q_a1.eq(1),
                         q_ok.eq(0),
                         q_v1.eq(0), q_v2.eq(0),
                         q_hit.eq(0),
                         q_valid.eq(0), q_idle.eq(1), occ.eq(0), q_wr.eq(0)]
        with m.Else():
            # q_wr = w_valid & running, registered (the RAM's write enable comes from an FF; a
            # clear pass only sets running when no stage is valid)
            m.d.sync += [q_wr.eq(e_valid & running),
                         q_wp.eq(q_wp + q_wr), q_h.eq(q_h_nx),
                         q_ok.eq(Mux(q_ok, q_a1[:-1] != q_wp[:-1], q_a[:-1] != q_wp[:-1])),
                         occ.eq(occ + accept - deliver),
                         q_v1.eq(q_ok), q_t1.eq(q_a), q_v2.eq(q_v1), q_t2.eq(q_t1),
                         # (both comparisons registered a cycle ahead, the load selects)
                         t_eq0.eq(Mux(q_load, q_t1[:-1] == q_h1[:-1], q_t1[:-1] == q_h[:-1])),
                         t_eq1.eq(Mux(q_load, q_t1[:-1] == q_h2[:-1], q_t1[:-1] == q_h1[:-1])),
                         q_hit.eq(q_v2 & Mux(q_load, t_eq1, t_eq0)),
                         q_valid.eq(q_load | (q_valid & ~self.o_stream.ready)),
                         q_idle.eq((q_idle | self.o_stream.ready) & ~q_hit)]
            with m.If(q_load):
                m.d.sync += [q_h1.eq(q_h2), q_h2.eq(q_h2 + 1)]
            with m.If(q_miss):
                m.d.sync += [q_a.eq(q_h), q_a1.eq(q_h1)]
            with m.Elif(q_ok):
                m.d.sync += [q_a.eq(q_a1), q_a1.eq(q_a1 + 1)]

        # ---- pipeline: A (RAM read), R (RAM output and current registered), H (H = V + I),
        # W (update registered; written back in the next cycle) ---------------------------------
        # (the stage registers are named: the k-induction proof, formal/neuron.py, relates them)
        a_valid, a_clr, a_last, a_addr = (
            Signal(name="a_valid"), Signal(name="a_clr"), Signal(name="a_last"),
            Signal(abits, name="a_addr"))
        a2_valid, a2_clr, a2_last, a2_addr = (
            Signal(name="a2_valid"), Signal(name="a2_clr"), Signal(name="a2_last"),
            Signal(abits, name="a2_addr"))
        a3_valid, a3_clr, a3_last, a3_addr = (
            Signal(name="a3_valid"), Signal(name="a3_clr"), Signal(name="a3_last"),
            Signal(abits, name="a3_addr"))
        a4_valid, a4_clr, a4_last, a4_addr = (
            Signal(name="a4_valid"), Signal(name="a4_clr"), Signal(name="a4_last"),
            Signal(abits, name="a4_addr"))
        r_valid, r_last, r_addr = (Signal(name="r_valid"), Signal(name="r_last"),
                                  Signal(abits, name="r_stage_addr"))
        rf_valid, rf_last, rf_addr = (Signal(name="rf_valid"), Signal(name="rf_last"),
                                  Signal(abits, name="rf_addr"))
        r2_valid, r2_last, r2_addr = (Signal(name="r2_valid"), Signal(name="r2_last"),
                                  Signal(abits, name="r2_addr"))
        h_valid, h_last, h_addr = (Signal(name="h_valid"), Signal(name="h_last"),
                                  Signal(abits, name="h_addr"))
        e_last, e_addr = Signal(name="e_last"), Signal(abits, name="e_addr")
        w_valid, w_addr = Signal(name="w_valid"), Signal(abits, name="w_stage_addr")
        b_valid, b_addr = Signal(name="b_valid"), Signal(abits, name="b_addr")  # the state word for the RAM
        b2_valid = Signal()                             # ... and once more: written
        # Each group counts the beats in A2 itself (a copy of ``beat``) and its RAM registers the
        # count once (``read_addr_regs=1``): a beat's word is read at the end of A3. The counters
        # are enabled by per-group copies of a2_valid, the write counters and enables by copies
        # of w_valid (kept_reg: the same next state, reset included): no single flip-flop drives
        # every group, and no input handshake logic reaches them in the same cycle.
        kept = "ecp5" if "ecp5" in (self.ram_target, self.carry_target) else None
        dropped = self.clear | ResetSignal()
        # A two-level tree: copies of a_valid and e_valid (from their own inputs) each drive the
        # copies of two groups, so no flip-flop drives all the groups spread over the die.
        pairs = range(0, len(groups), 2)
        # (the input of a_valid written out: one LUT, not the chain ready -> accept -> issue)
        issue_d = (self.i_stream.valid & running & room & ~hazard) | clr_go
        a_valid_c = [kept_reg(m, issue_d, rst=dropped, target=kept, name=f"av{k}")
                     for k in pairs]
        e_valid_c = [kept_reg(m, h_valid, rst=dropped, target=kept, name=f"ev{k}") for k in pairs]
        a_valid_g = [kept_reg(m, a_valid_c[gi // 2], rst=dropped, target=kept, name=f"a2v{gi}")
                     for gi in range(len(groups))]
        w_valid_g = [kept_reg(m, e_valid_c[gi // 2], rst=dropped, target=kept, name=f"wv{gi}")
                     for gi in range(len(groups))]
        for gi, (ram, rb, av) in enumerate(zip(state_rams, rd_ctr, a_valid_g, strict=True)):
            with m.If(self.clear):
                m.d.sync += rb.eq(0)
            with m.Elif(av):
                m.d.sync += rb.eq(Mux(rb == B - 1, 0, plus_one(rb, f"rinc{gi}")))
            m.d.comb += ram.r_addr.eq(rb)

        # Read-after-write hazard: a beat issued now reads its word at the end of A3 (counter in
        # A2, address register in A3), so it would miss the write-back of a beat of the same word
        # now in A .. E (written at the end of A3's cycle or later): it is held back until that
        # write is done. A step of
        # HAZARD_FREE_BEATS beats or more never re-accesses a word that early: no hazard logic.
        stages = [(a_valid, a_addr), (a2_valid, a2_addr), (a3_valid, a3_addr), (a4_valid, a4_addr),
                  (r_valid, r_addr), (rf_valid, rf_addr),
                  (r2_valid, r2_addr), (h_valid, h_addr), (e_valid, e_addr)]
        assert len(stages) + 1 == self.HAZARD_FREE_BEATS
        if B < len(stages) + 1:
            m.d.comb += hazard.eq(Cat(*[v & (a == beat) for v, a in stages]).any())

        clr_n = Signal(range(B + 1), init=B)              # clear beats still to issue
        clr_wait = Signal(init=1)   # first cycle of a clear pass: the read ports settle on word 0
        # a clear beat issues this cycle: ~running & ~clr_wait & (clr_n != 0), kept as a register
        # (computed from the next state) so that ``issue`` is one LUT from registers and ports:
        # it drives the valid copies of the state-RAM groups, a long route
        m.d.sync += clr_go.eq(~self.clear & Mux(clr_go, clr_n != 1, clr_n != 0))
        m.d.comb += [
            self.i_stream.ready.eq(running & ~self.clear & room & ~hazard),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            issue.eq(accept | clr_go),
            self.busy.eq(~running),
        ]
        m.d.sync += clr_wait.eq(self.clear)
        with m.If(self.clear):
            m.d.sync += [running.eq(0), clr_n.eq(B), beat.eq(0), pidx.eq(0),
                         a_valid.eq(0), a2_valid.eq(0), a3_valid.eq(0), a4_valid.eq(0),
                         r_valid.eq(0), b2_valid.eq(0),
                         rf_valid.eq(0), r2_valid.eq(0),
                         h_valid.eq(0), e_valid.eq(0), w_valid.eq(0), b_valid.eq(0)]
        with m.Else():
            with m.If(~running & ~clr_wait):
                with m.If(clr_n != 0):
                    m.d.sync += clr_n.eq(clr_n - 1)
                with m.Elif(~Cat(*[v for v, _ in stages], w_valid, b_valid, b2_valid).any()):
                    m.d.sync += running.eq(1)
            m.d.sync += [a_valid.eq(issue), a2_valid.eq(a_valid), a3_valid.eq(a2_valid),
                         a4_valid.eq(a3_valid), r_valid.eq(a4_valid), b2_valid.eq(b_valid),
                         rf_valid.eq(r_valid), r2_valid.eq(rf_valid),
                         h_valid.eq(r2_valid),
                         e_valid.eq(h_valid), w_valid.eq(e_valid), b_valid.eq(w_valid)]
        # clear pass: B clear beats go down the pipeline (no input, the state zeroed in R2) and
        # leave the cleared state (V = floor(Θ/2) or 0, S = 0) through the normal write-back
        m.d.sync += [
            a_clr.eq(~running), a_last.eq(last), a_addr.eq(beat),
            a2_clr.eq(a_clr), a2_last.eq(a_last), a2_addr.eq(a_addr),
            a3_clr.eq(a2_clr), a3_last.eq(a2_last), a3_addr.eq(a2_addr),
            a4_clr.eq(a3_clr), a4_last.eq(a3_last), a4_addr.eq(a3_addr),
            r_last.eq(a4_last), r_addr.eq(a4_addr),
            rf_last.eq(r_last), rf_addr.eq(r_addr),
            r2_last.eq(rf_last), r2_addr.eq(rf_addr),
            h_last.eq(r2_last), h_addr.eq(r2_addr),
            e_last.eq(h_last), e_addr.eq(h_addr),
            w_addr.eq(e_addr), b_addr.eq(w_addr),
        ]

        # Θ is read a stage after the state (the beat's entry; ST-BIF clear beats: the clear bank;
        # presented in A3 for the per-column address registers)
        if theta_mem is not None:
            # (a copy of a3_clr of its own: the RAM's column registers sit far from stage A4)
            t_clr = kept_reg(m, a2_clr, rst=ResetSignal(), target=kept, name="a3clr_theta")
            m.d.comb += theta_mem.r_addr.eq(Cat(pidx_a3[:kb], t_clr) if stbif else pidx_a3)

        # ---- datapath (no enables) -----------------------------------------------------------
        # stage R: the RAM output registers
        r_st = state_layout(Cat(*[ram.r_data for ram in state_rams]))
        # datapath registers have no reset (the valid bits have): their only set/reset input is
        # then free for the clear beats' sync resets below (the FF's LSR, no LUT)
        r_cur = Signal(cur_layout, reset_less=True)
        a_cur = Signal(cur_layout, reset_less=True)
        m.d.sync += a_cur.eq(self.i_stream.payload)  # (ignored by clear beats)
        a2_cur = Signal(cur_layout, reset_less=True)
        a3_cur = Signal(cur_layout, reset_less=True)
        a4_cur = Signal(cur_layout, reset_less=True)
        m.d.sync += [a2_cur.eq(a_cur), a3_cur.eq(a2_cur), a4_cur.eq(a3_cur), r_cur.eq(a4_cur)]
        # RF, R2: the RAM outputs registered twice more in the fabric (the block-RAM columns of a
        # wide array sit far from the lanes' logic: two shorter routes, not one long one)
        r2_st = Signal(state_layout, reset_less=True)
        r2_cur = Signal(cur_layout, reset_less=True)
        rf_st = Signal(state_layout, reset_less=True)
        rf_cur = Signal(cur_layout, reset_less=True)
        m.d.sync += [rf_st.eq(r_st), rf_cur.eq(r_cur), r2_st.eq(rf_st), r2_cur.eq(rf_cur)]

        w_st = Signal(state_layout, reset_less=True)
        wb = Signal(state_layout)                   # written back
        w_spk = Signal(spk_layout, reset_less=True)
        valid_last = self.n_neurons - (B - 1) * P   # lanes used in the last beat
        # Clear beats: their state word is zeroed on the way into R2 (sync reset: the FF's LSR;
        # for S) and
        # * ST-BIF: H is set to -1 (LSR), so that D = H + Θ' = floor(Θ/2) with the clear
        #   bank's Θ' = floor(Θ/2) + 1; the flag S > Qn is reset (no spike: H < 0 fires only
        #   with it) and so is k (state_select: the write-back takes D; otherwise V = D is
        #   selected with the clear flag) (LSRs, no LUT);
        # * LIF: 0 is added instead of the current: H = 0, which never fires (Θ >= 1).
        # The normal write-back then writes the cleared state. The flags: one register per lane
        # (:func:`~equispike.rtl._carry.kept_reg`, not merged by synthesis: a single one would
        # fan out to every lane's state bits), delayed with the beat.
        r_clr_l, r2_clr_l, e_clr_l = [], [], []
        # (the R-stage clear flag in one copy per state group, from a4_clr: a two-level tree)
        r_clr_g = [kept_reg(m, a4_clr, rst=ResetSignal(), target=self.carry_target,
                            name=f"rclr_g{gi}") for gi in range(len(groups))]
        for lane in range(P):
            rc = kept_reg(m, r_clr_g[lane // G], target=self.carry_target, name=f"rclr{lane}")
            r2c = Signal(name=f"r2clr{lane}", reset_less=True)
            hc = Signal(name=f"hclr{lane}", reset_less=True)
            ec = Signal(name=f"eclr{lane}", reset_less=True)
            m.d.sync += [r2c.eq(rc), hc.eq(r2c), ec.eq(hc)]
            with m.If(rc):
                m.d.sync += r2_st[lane].eq(0)
            r_clr_l.append(rc)
            r2_clr_l.append(r2c)
            e_clr_l.append(ec)
        ct = self.carry_target
        # A spike is (1, H < 0) reset by ``keep``: on the flip-flops' LSR. Its constant 1 comes
        # from a flip-flop (one per state group) that synthesis cannot see through: with a
        # constant input Yosys would turn the reset into a LUT (~keep) per lane.
        ones = [kept_reg(m, C(1, 1), target=ct, init=1, name=f"one{gi}")
                for gi in range(len(groups))] if stbif else []
        # Without the ECP5 carry-chain select, the H adder's operands are selected a stage
        # early, into R2 (the adder then starts from registers): ST-BIF the membrane
        # with state_select (V = H if k else D), LIF the current (I, or 0 for a clear beat).
        r2_op = []
        if ct != "ecp5" and (sel or not stbif):
            for lane in range(P):
                if stbif:
                    op = Signal(signed(vw), name=f"r2v{lane}", reset_less=True)
                    st = rf_st[lane]
                    m.d.sync += op.eq(Mux(st.k, st.h, st.d))
                else:
                    op = Signal(signed(cw), name=f"r2op{lane}", reset_less=True)
                    m.d.sync += op.eq(Mux(r_clr_l[lane], 0, rf_cur[lane]))
                r2_op.append(op)
        for lane in range(P):
            rs = r2_st[lane]
            th = w_theta[lane]
            # (init -1: ST-BIF clear beats set H to -1 on the FF's LSR, see w_st)
            h = Signal(signed(hw), name=f"h{lane}", reset_less=True, init=-1 if stbif else 0)
            e_h = Signal(signed(hw), name=f"eh{lane}", reset_less=True)
            m.d.sync += e_h.eq(h)
            spk = Signal(signed(2), name=f"spk{lane}")
            if stbif:
                # H: H = I + V; with state_select V = H if k else D (on ECP5 the select inside
                # the carry chain, else selected into R2)
                if not sel:
                    m.d.sync += h.eq(rs.v + r2_cur[lane])
                elif ct == "ecp5":
                    m.d.sync += h.eq(fused_add(m, hw, r2_cur[lane], rs.k, rs.h, rs.d, _SEL_STATE,
                                               target=ct, name=f"hadd{lane}"))
                else:
                    m.d.sync += h.eq(r2_op[lane] + r2_cur[lane])
                with m.If(r2_clr_l[lane]):
                    m.d.sync += h.eq(-1)
                h_s = Signal(signed(sw), name=f"hs{lane}", reset_less=True)
                up = Signal(name=f"up{lane}", reset_less=True)
                dn = Signal(name=f"dn{lane}", reset_less=True)
                # S stays in [Qn, Qp]: S < Qp is S != Qp, S > Qn is S != Qn
                bd = r2_bounds[lane]
                m.d.sync += [h_s.eq(rs.s), up.eq(rs.s != bd.qp), dn.eq(rs.s != bd.qn)]
                with m.If(r2_clr_l[lane]):
                    m.d.sync += dn.eq(0)
                hneg = h[-1]
                # E: D = H + Θ if H < 0 else H - Θ (= H + ~Θ + 1), the ±Θ inside the carry chain.
                # W: H >= 0 fires (+1) if D >= 0 and S < Qp; H < 0 fires (-1) if S > Qn. The
                # state keeps both D and H and k = "it did not fire": the next H adder selects
                # (V = H if k else D) inside its carry chain, no multiplexer per bit here. One
                # LUT per lane computes k; the spike registers take k as their sync reset.
                e_d = Signal(signed(hw), name=f"ed{lane}", reset_less=True)
                e_s = Signal(signed(sw), name=f"es{lane}", reset_less=True)
                e_up = Signal(name=f"eup{lane}", reset_less=True)
                e_dn = Signal(name=f"edn{lane}", reset_less=True)
                m.d.sync += [e_d.eq(fused_add(m, hw, h, th, hneg, 1, _SEL_PM_THETA, hneg, cin_inv=True,
                                              target=ct, name=f"dadd{lane}")),
                             e_s.eq(h_s), e_up.eq(up), e_dn.eq(dn)]
                e_neg = e_h[-1]
                keep = Signal(name=f"keep{lane}")
                m.d.comb += [keep.eq(~Mux(e_neg, e_dn, ~e_d[hw - 1] & e_up)),
                             spk.eq(Cat(ones[lane // G], e_neg))]   # (reset by keep, below)
                m.d.sync += w_st[lane].s.eq(e_s)
                if sel:
                    m.d.sync += [w_st[lane].d.eq(e_d), w_st[lane].h.eq(e_h),
                                 w_st[lane].k.eq(keep)]
                    with m.If(e_clr_l[lane]):
                        m.d.sync += w_st[lane].k.eq(0)
                else:
                    m.d.sync += w_st[lane].v.eq(Mux(keep & ~e_clr_l[lane], e_h, e_d))
                # S += s in the write-back cycle (a short carry chain into the RAM; through
                # fused_add for its chain without feed-in/pass-out cells on ECP5)
                m.d.comb += wb[lane].s.eq(fused_add(m, sw, w_st[lane].s, w_spk[lane], 0, 1,
                                                    _SEL_PLAIN, target=ct, name=f"sadd{lane}"))
                if sel:
                    m.d.comb += [wb[lane].d.eq(w_st[lane].d), wb[lane].h.eq(w_st[lane].h),
                                 wb[lane].k.eq(w_st[lane].k)]
                else:
                    m.d.comb += wb[lane].v.eq(w_st[lane].v)
            else:
                # H = V + (0 if clear else I), the select inside the carry chain
                if ct == "ecp5":
                    m.d.sync += h.eq(fused_add(m, hw, rs.v, r2_clr_l[lane], r2_cur[lane], 0,
                                               _SEL_ZERO, target=ct, name=f"hadd{lane}"))
                else:
                    m.d.sync += h.eq(rs.v + r2_op[lane])
                # h = (V + I) >> 1 >= Θ  <=>  V + I >= 2Θ; V = 0 if it fires else h
                e_d = Signal(signed(hw + 1), name=f"ed{lane}", reset_less=True)
                m.d.sync += e_d.eq(h - (th << 1))
                fire = ~e_d[-1]
                m.d.comb += [spk.eq(fire), wb[lane].v.eq(w_st[lane].v)]
                m.d.sync += w_st[lane].v.eq(Mux(fire, 0, e_h >> 1))
            m.d.sync += w_spk[lane].eq(spk)
            if stbif:
                with m.If(keep):
                    m.d.sync += w_spk[lane].eq(0)
            if lane >= valid_last:
                with m.If(e_last):
                    m.d.sync += w_spk[lane].eq(0)

        # ---- write-back (updates and the clear pass) and spikes to the queue -----------------
        # the word to write is registered once more: a register next to the block RAM, since
        # the RAM columns of a wide array sit far from the lanes' logic
        b_word = Signal(state_layout, reset_less=True)
        b2_word = Signal(state_layout, reset_less=True)
        m.d.sync += [b_word.eq(wb), b2_word.eq(b_word)]
        # write-backs come in beat order from 0 after a clear: each group counts them itself and
        # registers its write address with the word (the dummy word B when no beat is in W)
        bw = Value.cast(b2_word)
        for gi, (lo, hi) in enumerate(groups):
            wc = wr_ctr[gi]
            with m.If(self.clear):                 # the beats in flight are dropped
                m.d.sync += wc.eq(0)
            with m.Elif(w_valid_g[gi]):
                m.d.sync += wc.eq(Mux(wc == B - 1, 0, plus_one(wc, f"winc{gi}")))
            # (the RAM registers the address and enable twice: the write lands in B2 with b2_word.
            # A write presented in a clear cycle still lands, two cycles later: harmless, the clear
            # pass rewrites every word about ten cycles after that.)
            m.d.comb += [state_rams[gi].w_addr.eq(wc), state_rams[gi].w_en.eq(w_valid_g[gi]),
                         state_rams[gi].w_data.eq(bw[lo * lane_bits:hi * lane_bits])]
        # (the RAM registers the address and enable: the word is written with b_spk)
        b_spk = Signal(spk_layout, reset_less=True)
        m.d.sync += b_spk.eq(w_spk)
        m.d.comb += [oq.w_addr.eq(q_wp[:-1]), oq.w_data.eq(b_spk),
                     oq.w_en.eq(q_wr)]
        return m


if __name__ == "__main__":  # pragma: no cover
    from amaranth.back import verilog

    print(verilog.convert(NeuronArray(lanes=4, n_neurons=10, current_width=8, membrane_width=12,
                                      theta=5, qn=-8, qp=7), emit_src=False)[:400])
