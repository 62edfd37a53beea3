"""Pipelined P-lane neuron array: ST-BIF (SPEC §2) or binary LIF (SPEC §8), state in memory."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._util import ceil_div, check_int, pack_lanes

__all__ = ["NeuronArray", "ConfigPort", "OUT_QUEUE_DEPTH"]

#: Output queue depth: covers the 6-cycle input-to-queue latency so that the array runs at one
#: beat per cycle without back-pressure reaching the (stall-free) pipeline.
OUT_QUEUE_DEPTH = 8


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
    write port (write it, then pulse ``clear``: the cleared membrane depends on Θ).

    Pipeline and timing
    -------------------
    Stage 0 accepts a beat and issues registered reads of the state (V, S) and parameter
    memories; stage 1 computes ``H``, the comparisons and the update, writes the state back
    (the read port is transparent to that write, so back-to-back accesses of one address, as when
    ``beats == 1``, are exact) and loads the output register. Latency 2 cycles from input transfer
    to output valid; throughput one beat (``lanes`` neurons) per cycle; ``o_stream`` back-pressure
    stalls the pipeline without loss.

    ``clear`` (one-cycle strobe) and reset start a clear pass of ``beats + 1`` cycles that writes
    the cleared state to every neuron, drops any beat in flight and restarts at beat 0; ``busy``
    is high and ``i_stream.ready`` low meanwhile.

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
        Entries of the parameter memory (1..beats).
    theta, qn, qp : array-like, optional
        Initial parameters, broadcastable to ``(param_depth, lanes)``.
    """

    def __init__(self, *, lanes: int, n_neurons: int, mode: str = "stbif", current_width: int,
                 membrane_width: int, levels: int = 16, param_depth: int = 1,
                 theta=None, qn=None, qp=None):
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
        self.param_init = self._param_init(theta, qn, qp)

        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(signed(self.current_width),
                                                             self.lanes))),
            "o_stream": Out(stream.Signature(data.ArrayLayout(signed(2), self.lanes))),
            "clear": In(1),
            "busy": Out(1),
            "cfg": In(ConfigPort(self.param_depth, self.param_layout)),
        })

    def _param_init(self, theta, qn, qp) -> list[int]:
        shape = (self.param_depth, self.lanes)
        if theta is None:
            return [0] * self.param_depth
        th = np.broadcast_to(np.asarray(theta, dtype=np.int64), shape)
        if th.min() < 1 or th.max() >= 1 << self.theta_width:
            raise ValueError(f"theta must be in [1, {(1 << self.theta_width) - 1}] for "
                             f"membrane_width {self.membrane_width}, got [{th.min()}, {th.max()}]")
        entries = []
        if self.mode == "stbif":
            if qn is None or qp is None:
                raise ValueError("qn and qp are required with theta in stbif mode")
            lo, hi = -(1 << (self.tracer_width - 1)), (1 << (self.tracer_width - 1)) - 1
            qn_a = np.broadcast_to(np.asarray(qn, dtype=np.int64), shape)
            qp_a = np.broadcast_to(np.asarray(qp, dtype=np.int64), shape)
            if (qn_a > 0).any() or (qp_a < 0).any() or (qn_a >= qp_a).any() \
                    or qn_a.min() < lo or qp_a.max() > hi:
                raise ValueError(f"bounds must satisfy {lo} <= qn <= 0 <= qp <= {hi}, qn < qp "
                                 f"(levels {self.levels})")
        lw = self.lane_param.size
        for d in range(self.param_depth):
            lanes = []
            for lane in range(self.lanes):
                v = int(th[d, lane])
                if self.mode == "stbif":
                    tw, sw = self.theta_width, self.tracer_width
                    v |= (int(qn_a[d, lane]) & ((1 << sw) - 1)) << tw
                    v |= (int(qp_a[d, lane]) & ((1 << sw) - 1)) << (tw + sw)
                lanes.append(v)
            entries.append(pack_lanes(lanes, lw))
        return entries

    def elaborate(self, platform):
        m = Module()
        P, vw, cw, sw = self.lanes, self.membrane_width, self.current_width, self.tracer_width
        B = self.beats
        stbif = self.mode == "stbif"
        lane_state = data.StructLayout(
            {"v": signed(vw), "s": signed(sw)} if stbif else {"v": signed(vw)})
        state_layout = data.ArrayLayout(lane_state, P)
        cur_layout = data.ArrayLayout(signed(cw), P)
        spk_layout = data.ArrayLayout(signed(2), P)
        abits = range(max(B, 2))

        # ---- memories ------------------------------------------------------------------------
        # state: block RAM, registered read (no logic between the RAM output and a register)
        m.submodules.state = state = Memory(shape=unsigned(state_layout.size), depth=max(B, 2),
                                            init=[], attrs={"ram_style": "block"})
        s_wr = state.write_port()
        s_rd = state.read_port(domain="sync")
        c_pr = Signal(self.param_layout)            # parameters of the beat in stage C
        if self.param_depth == 1:
            # one entry: a plain register (no addressing, no read latency)
            prm = Signal(unsigned(self.param_layout.size), init=self.param_init[0])
            with m.If(self.cfg.en):
                m.d.sync += prm.eq(self.cfg.data.as_value())
            m.d.comb += c_pr.eq(prm)
            p_rd = None
        else:
            m.submodules.params = params = Memory(shape=unsigned(self.param_layout.size),
                                                  depth=self.param_depth, init=self.param_init)
            p_wr = params.write_port()
            p_rd = params.read_port(domain="sync")
            m.d.comb += [p_wr.addr.eq(self.cfg.addr), p_wr.data.eq(self.cfg.data.as_value()),
                         p_wr.en.eq(self.cfg.en)]
            m.d.sync += c_pr.eq(p_rd.data)          # RAM output register

        # ---- output queue (credit based: a beat is accepted only if its spikes have room) ----
        # block RAM of OUT_QUEUE_DEPTH words whose read port (enabled when the output register
        # is free) is the output register, as in amaranth.lib.fifo.SyncFIFOBuffered
        Q = OUT_QUEUE_DEPTH
        m.submodules.oq = oq = Memory(shape=unsigned(spk_layout.size), depth=Q, init=[],
                                      attrs={"ram_style": "block"})
        q_wr = oq.write_port()
        q_rd = oq.read_port(domain="sync")
        q_wp, q_rp = Signal(range(Q)), Signal(range(Q))
        q_n = Signal(range(Q + 1))                  # words in the RAM (not yet loaded)
        q_valid = Signal()
        q_load = Signal()
        occ = Signal(range(Q + 2))                  # beats accepted and not yet delivered
        m.d.comb += [self.o_stream.valid.eq(q_valid), self.o_stream.payload.eq(q_rd.data),
                     q_load.eq((q_n != 0) & (~q_valid | self.o_stream.ready)),
                     q_rd.addr.eq(q_rp), q_rd.en.eq(q_load)]
        with m.If(self.clear):
            m.d.sync += [q_wp.eq(0), q_rp.eq(0), q_n.eq(0), q_valid.eq(0)]
        with m.Else():
            m.d.sync += q_n.eq(q_n + q_wr.en - q_load)
            with m.If(q_wr.en):
                m.d.sync += q_wp.eq(Mux(q_wp == Q - 1, 0, q_wp + 1))
            with m.If(q_load):
                m.d.sync += [q_rp.eq(Mux(q_rp == Q - 1, 0, q_rp + 1)), q_valid.eq(1)]
            with m.Elif(self.o_stream.ready):
                m.d.sync += q_valid.eq(0)

        # ---- control -------------------------------------------------------------------------
        running = Signal()          # 0 after reset: clear pass first
        beat = Signal(abits)
        pidx = Signal(range(max(self.param_depth, 2)))
        accept = Signal()
        # pipeline registers, named by stage: B (state read issued), C (state RAM output, into
        # U1's registers with no logic unless forwarding), U1 (H = V + I), U2 (comparison and
        # update), W (write-back, spikes to the queue)
        b_valid, b_last, b_addr, b_cur = Signal(), Signal(), Signal(abits), Signal(cur_layout)
        c_valid, c_last, c_addr, c_cur = Signal(), Signal(), Signal(abits), Signal(cur_layout)
        u_valid, u_last, u_addr, u_cur = Signal(), Signal(), Signal(abits), Signal(cur_layout)
        u_st = Signal(state_layout)
        u_pr = Signal(self.param_layout)
        u_fwd = Signal()
        h_valid, h_last, h_addr = Signal(), Signal(), Signal(abits)
        h_pr = Signal(self.param_layout)
        w_valid, w_addr = Signal(), Signal(abits)
        w_st = Signal(state_layout)
        w_spk = Signal(spk_layout)
        w_hist = [(Signal(name="w2_valid"), Signal(abits, name="w2_addr"),
                   Signal(state_layout, name="w2_st"))]
        pipe_valids = [b_valid, c_valid, u_valid, h_valid, w_valid, w_hist[0][0]]

        deliver = self.o_stream.valid & self.o_stream.ready
        room = occ < Q
        # the update loop (U1 -> U2 -> U1) is two cycles: with one beat per step a state word
        # would be needed again the very next cycle, so a beat is then accepted every other cycle
        spaced = ~b_valid if B == 1 else 1
        m.d.comb += [
            self.i_stream.ready.eq(running & ~self.clear & room & spaced),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            self.busy.eq(~running),
            s_rd.addr.eq(b_addr),
            q_wr.addr.eq(q_wp),
            q_wr.data.eq(w_spk),
            q_wr.en.eq(w_valid),
        ]
        with m.If(self.clear):
            m.d.sync += occ.eq(0)
        with m.Else():
            m.d.sync += occ.eq(occ + accept - deliver)

        # clear pass: walks clr_a over the state words; the cleared state depends on the
        # parameters, read for word clr_a and registered (stage C) two cycles later
        clr_a = Signal(range(B + 1))
        clr_p = Signal(range(max(self.param_depth, 2)))
        clr_w1, clr_w2 = Signal(), Signal()
        clr_a1, clr_a2 = Signal(abits), Signal(abits)
        if p_rd is not None:
            m.d.comb += p_rd.addr.eq(Mux(running, pidx, clr_p))

        with m.If(self.clear):
            m.d.sync += [running.eq(0), clr_a.eq(0), clr_p.eq(0), clr_w1.eq(0), clr_w2.eq(0),
                         beat.eq(0), pidx.eq(0)]
            m.d.sync += [v.eq(0) for v in pipe_valids]
        with m.Elif(~running):
            m.d.sync += [clr_w1.eq(clr_a < B), clr_a1.eq(clr_a), clr_w2.eq(clr_w1),
                         clr_a2.eq(clr_a1)]
            with m.If(clr_a < B):
                m.d.sync += clr_a.eq(clr_a + 1)
                m.d.sync += clr_p.eq(Mux(clr_p == self.param_depth - 1, 0, clr_p + 1))
            with m.Elif(~clr_w1 & ~clr_w2):
                m.d.sync += running.eq(1)
        with m.Else():
            with m.If(accept):
                last = beat == B - 1
                m.d.sync += [
                    beat.eq(Mux(last, 0, beat + 1)),
                    pidx.eq(Mux(last | (pidx == self.param_depth - 1), 0, pidx + 1)),
                ]
            m.d.sync += [b_valid.eq(accept), c_valid.eq(b_valid), u_valid.eq(c_valid),
                         h_valid.eq(u_valid), w_valid.eq(h_valid)]
            m.d.sync += w_hist[0][0].eq(w_valid)

        # ---- datapath (no enables: the pipeline never stalls, the queue absorbs back-pressure)
        m.d.sync += [
            b_last.eq(beat == B - 1), b_addr.eq(beat), b_cur.eq(self.i_stream.payload),
            c_last.eq(b_last), c_addr.eq(b_addr), c_cur.eq(b_cur),
            u_last.eq(c_last), u_addr.eq(c_addr), u_cur.eq(c_cur), u_pr.eq(c_pr),
            h_last.eq(u_last), h_addr.eq(u_addr), h_pr.eq(u_pr),
            w_addr.eq(h_addr),
            w_hist[0][1].eq(w_addr), w_hist[0][2].eq(w_st),
        ]
        # forwarding. Beat k (accepted in cycle k) reads its word at the end of cycle k+1 (the
        # RAM output goes straight into U1's register); beat k-d writes its new state at the end
        # of cycle k-d+5, so for d <= 4 the read is stale. d = 2 (only possible with B <= 2):
        # beat k-2's result is in W while beat k is in U1 -> forward into U1. d = 3, 4 (B <= 4):
        # the result is in W, W2 while the RAM output is loaded into U1's registers (newest
        # first). d = 1 cannot happen (B == 1 spaces beats). With B >= 5 there is no forwarding.
        fresh = s_rd.data
        for k, (valid, addr, st) in reversed(list(enumerate([(w_valid, w_addr, w_st)] + w_hist))):
            if B <= k + 3:
                fresh = Mux(valid & (addr == c_addr), st, fresh)
        m.d.sync += u_st.eq(fresh)
        if B <= 2:
            m.d.sync += u_fwd.eq(h_valid & (h_addr == c_addr))
        v_in = state_layout(Mux(u_fwd, w_st, u_st)) if B <= 2 else u_st

        valid_last = self.n_neurons - (B - 1) * P   # lanes used in the last beat
        hw = max(vw + 1, cw + 1) + 1                # holds V + I, V + I -/+ Θ, V + I - 2Θ
        h = Signal(data.ArrayLayout(signed(hw), P))
        h_s = Signal(state_layout)
        h_sp = Signal(state_layout)  # S + 1 (only .s used)
        h_sm = Signal(state_layout)  # S - 1 (only .s used)
        h_up = Signal(P)            # S < Qp
        h_dn = Signal(P)            # S > Qn
        h_nth = Signal(data.ArrayLayout(signed(self.theta_width + 1), P))   # -Θ
        for lane in range(P):
            vi = v_in[lane]
            pr = u_pr[lane]
            # U1: H = V + I (one adder), tracer bounds (small compares)
            m.d.sync += h[lane].eq(vi.v + u_cur[lane])
            if stbif:
                m.d.sync += [h_s[lane].s.eq(vi.s), h_up[lane].eq(vi.s < pr.qp),
                             h_dn[lane].eq(vi.s > pr.qn), h_sp[lane].s.eq(vi.s + 1),
                             h_sm[lane].s.eq(vi.s - 1), h_nth[lane].eq(-pr.theta)]
            # U2: one more adder and a 2:1 select.
            th = h_pr[lane].theta
            hl = h[lane]
            d = Signal(signed(hw), name=f"d{lane}")
            if stbif:
                # H >= 0: D = H - Θ, fires (+1) if D >= 0 and S < Qp; H < 0: D = H + Θ, fires
                # (-1) if S > Qn. V = D if it fires else H.
                hneg = hl[-1]
                # (-Θ and S ± 1 precomputed in U1: one carry chain and muxes here)
                m.d.comb += d.eq(hl + Mux(hneg, th, h_nth[lane]))
                fire = Mux(hneg, h_dn[lane], ~d[-1] & h_up[lane])
                m.d.sync += [
                    w_st[lane].v.eq(Mux(fire, d, hl)),
                    w_st[lane].s.eq(Mux(fire, Mux(hneg, h_sm[lane].s, h_sp[lane].s), h_s[lane].s)),
                    w_spk[lane].eq(Mux(fire, Mux(hneg, -1, 1), 0)),
                ]
            else:
                # h = (V + I) >> 1 >= Θ  <=>  V + I >= 2Θ
                m.d.comb += d.eq(hl - (th << 1))
                fire = ~d[-1]
                m.d.sync += [w_st[lane].v.eq(Mux(fire, 0, hl >> 1)), w_spk[lane].eq(fire)]
            if lane >= valid_last:
                with m.If(h_last):
                    m.d.sync += w_spk[lane].eq(0)

        # ---- state write port: updates, or the clear pass ----------------------------------
        clr_state = Signal(state_layout)
        for lane in range(P):
            m.d.comb += clr_state[lane].v.eq(c_pr[lane].theta >> 1 if stbif else 0)
        with m.If(running):
            m.d.comb += [s_wr.addr.eq(w_addr), s_wr.data.eq(w_st), s_wr.en.eq(w_valid)]
        with m.Else():
            m.d.comb += [s_wr.addr.eq(clr_a2), s_wr.data.eq(clr_state), s_wr.en.eq(clr_w2)]
        return m


if __name__ == "__main__":  # pragma: no cover
    from amaranth.back import verilog

    print(verilog.convert(NeuronArray(lanes=4, n_neurons=10, current_width=8, membrane_width=12,
                                      theta=5, qn=-8, qp=7), emit_src=False)[:400])
