"""Pipelined P-lane neuron array: ST-BIF (SPEC §2) or binary LIF (SPEC §8), state in memory."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._util import ceil_div, check_int, pack_lanes

__all__ = ["NeuronArray", "ConfigPort"]


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
        P, vw, cw = self.lanes, self.membrane_width, self.current_width
        stbif = self.mode == "stbif"
        sw = self.tracer_width
        lane_state = data.StructLayout(
            {"v": signed(vw), "s": signed(sw)} if stbif else {"v": signed(vw)})
        state_layout = data.ArrayLayout(lane_state, P)

        m.submodules.params = params = Memory(shape=unsigned(self.param_layout.size),
                                              depth=max(self.param_depth, 2),
                                              init=self.param_init)
        p_wr = params.write_port()
        p_rd = params.read_port(domain="sync")
        m.d.comb += [p_wr.addr.eq(self.cfg.addr), p_wr.data.eq(self.cfg.data.as_value()),
                     p_wr.en.eq(self.cfg.en)]

        m.submodules.state = state = Memory(shape=unsigned(state_layout.size),
                                            depth=max(self.beats, 2),
                                            init=[])
        s_wr = state.write_port()
        s_rd = state.read_port(domain="sync", transparent_for=(s_wr,))
        prm = self.param_layout(p_rd.data)
        cur_state = state_layout(s_rd.data)

        # ---- control -------------------------------------------------------------------
        running = Signal()          # 0 after reset: clear pass first
        beat = Signal(range(max(self.beats, 2)))
        pidx = Signal(range(max(self.param_depth, 2)))
        s1_valid = Signal()
        s1_cur = Signal(data.ArrayLayout(signed(cw), P))
        s1_addr = Signal(range(max(self.beats, 2)))
        s1_last = Signal()
        o_valid = Signal()
        o_spk = Signal(data.ArrayLayout(signed(2), P))
        advance = Signal()
        accept = Signal()

        m.d.comb += [
            advance.eq(~o_valid | self.o_stream.ready),
            self.i_stream.ready.eq(running & ~self.clear & (~s1_valid | advance)),
            accept.eq(self.i_stream.valid & self.i_stream.ready),
            self.o_stream.valid.eq(o_valid),
            self.o_stream.payload.eq(o_spk),
            self.busy.eq(~running),
        ]

        # clear pass: read params for address clr_a, write state one cycle later
        clr_a = Signal(range(self.beats + 1))
        clr_p = Signal(range(max(self.param_depth, 2)))
        clr_w = Signal()
        clr_wa = Signal(range(max(self.beats, 2)))

        with m.If(running):
            m.d.comb += [p_rd.addr.eq(pidx), p_rd.en.eq(accept),
                         s_rd.addr.eq(beat), s_rd.en.eq(accept)]
        with m.Else():
            m.d.comb += [p_rd.addr.eq(clr_p), p_rd.en.eq(1)]

        with m.If(self.clear):
            m.d.sync += [running.eq(0), clr_a.eq(0), clr_p.eq(0), clr_w.eq(0),
                         s1_valid.eq(0), o_valid.eq(0), beat.eq(0), pidx.eq(0)]
        with m.Elif(~running):
            m.d.sync += clr_w.eq(clr_a < self.beats)
            m.d.sync += clr_wa.eq(clr_a)
            with m.If(clr_a < self.beats):
                m.d.sync += clr_a.eq(clr_a + 1)
                m.d.sync += clr_p.eq(Mux(clr_p == self.param_depth - 1, 0, clr_p + 1))
            with m.Elif(~clr_w):
                m.d.sync += running.eq(1)
        with m.Else():
            with m.If(accept):
                last = beat == self.beats - 1
                m.d.sync += [
                    s1_valid.eq(1), s1_cur.eq(self.i_stream.payload), s1_addr.eq(beat),
                    s1_last.eq(last),
                    beat.eq(Mux(last, 0, beat + 1)),
                    pidx.eq(Mux(last | (pidx == self.param_depth - 1), 0, pidx + 1)),
                ]
            with m.Elif(advance):
                m.d.sync += s1_valid.eq(0)
            with m.If(s1_valid & advance):
                m.d.sync += o_valid.eq(1)
            with m.Elif(self.o_stream.ready):
                m.d.sync += o_valid.eq(0)

        # ---- stage 1: neuron update (one lane each) --------------------------------------
        new_state = Signal(state_layout)
        new_spk = Signal(data.ArrayLayout(signed(2), P))
        clr_state = Signal(state_layout)
        valid_last = self.n_neurons - (self.beats - 1) * P   # lanes used in the last beat
        hw = max(vw, cw) + 2
        for lane in range(P):
            v = cur_state[lane].v
            i_t = s1_cur[lane]
            th = prm[lane].theta
            h = Signal(signed(hw), name=f"h{lane}")
            m.d.comb += h.eq(v + i_t)
            if stbif:
                s = cur_state[lane].s
                hm = Signal(signed(hw), name=f"hm{lane}")
                hp = Signal(signed(hw), name=f"hp{lane}")
                m.d.comb += [hm.eq(v + i_t - th), hp.eq(v + i_t + th)]
                pos = ~hm[-1] & (s < prm[lane].qp)
                neg = h[-1] & (s > prm[lane].qn)
                m.d.comb += [
                    new_state[lane].v.eq(Mux(pos, hm, Mux(neg, hp, h))),
                    new_state[lane].s.eq(s + Mux(pos, 1, Mux(neg, -1, 0))),
                    new_spk[lane].eq(Mux(pos, 1, Mux(neg, -1, 0))),
                    clr_state[lane].v.eq(th >> 1),
                    clr_state[lane].s.eq(0),
                ]
            else:
                hh = Signal(signed(hw), name=f"hh{lane}")
                m.d.comb += hh.eq(h >> 1)
                fire = hh >= th
                m.d.comb += [
                    new_state[lane].v.eq(Mux(fire, 0, hh)),
                    new_spk[lane].eq(fire),
                    clr_state[lane].v.eq(0),
                ]
            if lane >= valid_last:
                with m.If(s1_last):
                    m.d.comb += new_spk[lane].eq(0)

        with m.If(running):
            with m.If(s1_valid & advance):
                m.d.sync += o_spk.eq(new_spk)
                m.d.comb += [s_wr.addr.eq(s1_addr), s_wr.data.eq(new_state), s_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [s_wr.addr.eq(clr_wa), s_wr.data.eq(clr_state), s_wr.en.eq(clr_w)]
        return m


if __name__ == "__main__":  # pragma: no cover
    from amaranth.back import verilog

    print(verilog.convert(NeuronArray(lanes=4, n_neurons=10, current_width=8, membrane_width=12,
                                      theta=5, qn=-8, qp=7), emit_src=False)[:400])
