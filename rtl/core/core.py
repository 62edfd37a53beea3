"""The core: one programmable machine that runs a whole exported model (SPEC §7, §9, §11).

Its logic is set by :class:`~equispike.compiler.isa.CoreParams` (lanes, memory depths, word
widths), never by the model: a compiled :class:`~equispike.compiler.program.Program` supplies the
instructions and the memory contents. A bigger model needs deeper memories and more cycles, not
more logic.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...compiler.isa import CoreParams, Op, encode, instr_fields
from ...compiler.program import MEMORIES, Program
from .ports import connect_ports, log2_exact
from .units import (
    AwUnit,
    CopyUnit,
    NeuronUnit,
    NormUnit,
    NResetUnit,
    SpkAddUnit,
    SrowUnit,
    TransUnit,
    addr_width,
    instr_layout,
)

__all__ = ["Core", "CYCLE_CLASSES", "STATUS_FIELDS", "out_rows", "lane_bits"]

#: cycle classes of the ``cycles_by_unit`` breakdown, in the order of the status rows
CYCLE_CLASSES = ("engine", "attention", "softmax", "layernorm", "neurons", "residual", "control")
#: lanes of the status row
STATUS_FIELDS = ("settle_step", "steps", "cycles")


def _pack_rows(rows, width: int) -> list[int]:
    out = []
    for r in rows:
        w = 0
        for i, v in enumerate(r):
            w |= (int(v) & ((1 << width) - 1)) << (i * width)
        out.append(w)
    return out


def lane_bits(params: CoreParams, mem: str) -> int:
    """Bits per lane of a row of memory ``mem`` (one of :data:`~equispike.compiler.program.MEMORIES`)."""
    p = params
    return {"D": p.dw, "Q": p.pw, "W": 8, "I": p.iw, "V": p.vw, "T": p.tw, "S": 2}[mem]


def out_rows(params: CoreParams, logits_rows: int) -> int:
    """Output beats of one inference: logits rows, counter rows, cycle-class rows, the status row."""
    P = params.lanes
    return logits_rows + -(-params.counters // P) + -(-len(CYCLE_CLASSES) // P) + 1


class Core(wiring.Component):
    """A model-independent spiking-transformer core running a compiled program.

    Host interface
    --------------
    ``i_stream``: the image, ``Program.input_rows`` beats of ``P`` lanes of ``iw``-bit codes
    (patch-major, ``compiler.program.image_rows``). ``o_stream``: per inference,
    :func:`out_rows` beats of ``P`` lanes of ``dw`` bits, ``last`` on the final one: the logits
    rows, the event counters (``Program.counters``), the cycles per class
    (:data:`CYCLE_CLASSES`), and a status row (:data:`STATUS_FIELDS`: settle step or −1, steps
    run, cycles from the image's last input beat to the first output beat).
    ``spike_trace`` (if ``trace=True``): every spike row of every ``NEURON`` instruction as it is
    written (``valid`` for one cycle, no back-pressure), with the step and the ``S`` row.

    Timing
    ------
    Each instruction costs two cycles of fetch and decode plus its unit's items (one row per
    cycle, see :mod:`equispike.rtl.core.units`); ``o_stream`` holds each beat until ``ready``.

    Parameters
    ----------
    program:
        A compiled program; its ``params`` set the core's generation parameters.
    trace:
        Build the trace port (simulation); leave it out for synthesis.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(P·iw)))
    o_stream : Out(stream.Signature({data: unsigned(P·dw), last: 1}))
    spike_trace : Out({valid, step, row, spikes})
    """

    def __init__(self, program: Program, trace: bool = True):
        if not isinstance(program, Program):
            raise TypeError(f"program must be a Program, got {type(program).__name__}")
        self.program = program
        self.params = p = program.params
        log2_exact(p.lanes)
        self.with_trace = bool(trace)
        aw = addr_width(p)
        members = {
            "i_stream": In(stream.Signature(unsigned(p.lanes * p.iw))),
            "o_stream": Out(
                stream.Signature(data.StructLayout({"data": unsigned(p.lanes * p.dw), "last": 1}))
            ),
        }
        if self.with_trace:
            members["spike_trace"] = Out(
                data.StructLayout({"valid": 1, "step": 16, "row": aw, "spikes": 2 * p.lanes})
            )
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        prog, p = self.program, self.params
        P = p.lanes
        aw = addr_width(p)
        self.memories: dict[str, Memory] = {}

        def mem(name: str, width: int, depth: int, init=None):
            mm = Memory(shape=unsigned(width), depth=depth, init=init or [])
            m.submodules[f"mem_{name}"] = mm
            self.memories[name] = mm  # for simulation testbenches that inspect the state
            return mm

        init = {
            k: _pack_rows(v, lane_bits(p, k))
            for k, v in prog.images.items()
            if v.size
        }
        dmem = mem("d", P * p.dw, p.d_depth, init.get("D"))
        vmem = mem("v", P * p.vw, p.n_depth)
        tmem = mem("t", P * p.tw, p.n_depth)
        smem = mem("s", P * 2, p.s_depth)
        qmem = mem("q", P * p.pw, p.q_depth, init.get("Q"))
        wmem = mem("w", P * 8, p.w_depth, init.get("W"))
        imem = mem("i", P * p.iw, p.i_depth)
        iw_words = [encode(ins, p) for ins in prog.instrs]
        pmem = mem("prog", sum(w for _, w, _ in instr_fields(p)), p.prog_depth, iw_words)
        for k in MEMORIES:
            assert prog.images.get(k) is None or prog.images[k].shape[0] <= getattr(p, MEMORIES[k])

        d_wr = dmem.write_port()
        d_ra = dmem.read_port(transparent_for=(d_wr,))
        d_rb = dmem.read_port()
        v_wr, t_wr, s_wr = vmem.write_port(), tmem.write_port(), smem.write_port()
        v_rd, t_rd = vmem.read_port(), tmem.read_port()
        s_r1 = smem.read_port()
        s_r2 = smem.read_port(transparent_for=(s_wr,))
        q_r1, q_r2 = qmem.read_port(), qmem.read_port()
        w_rd = wmem.read_port()
        i_wr = imem.write_port()
        i_rd = imem.read_port()
        p_rd = pmem.read_port()

        units = {
            "copy": CopyUnit(p),
            "nreset": NResetUnit(p),
            "neuron": NeuronUnit(p),
            "spkadd": SpkAddUnit(p),
            "aw": AwUnit(p),
            "trans": TransUnit(p),
            "srow": SrowUnit(p),
            "norm": NormUnit(p),
        }
        for k, u in units.items():
            m.submodules[k] = u
        uid = {k: i + 1 for i, k in enumerate(units)}  # 0: the sequencer itself
        op_unit = {
            Op.COPY: "copy",
            Op.NRESET: "nreset",
            Op.NEURON: "neuron",
            Op.SPKADD: "spkadd",
            Op.AW: "aw",
            Op.TRANS: "trans",
            Op.SROW: "srow",
            Op.LN: "norm",
            Op.SMX: "norm",
        }
        active = Signal(range(len(units) + 1))
        U = units
        connect_ports(
            m,
            active,
            d_ra,
            {
                uid["copy"]: U["copy"].d_rd,
                uid["neuron"]: U["neuron"].d_rd,
                uid["spkadd"]: U["spkadd"].d_rd,
                uid["aw"]: U["aw"].d_rd,
                uid["trans"]: U["trans"].d_rd,
                uid["srow"]: U["srow"].d_rd,
                uid["norm"]: U["norm"].d_rd,
            },
        )
        seq_drb = _Port(aw, P * p.dw)
        connect_ports(
            m,
            active,
            d_rb,
            {
                0: seq_drb,
                uid["neuron"]: U["neuron"].d_rdb,
                uid["aw"]: U["aw"].d_rdb,
                uid["srow"]: U["srow"].d_rdb,
                uid["norm"]: U["norm"].d_rdb,
            },
        )
        connect_ports(
            m,
            active,
            d_wr,
            {
                uid["copy"]: U["copy"].d_wr,
                uid["neuron"]: U["neuron"].d_wr,
                uid["spkadd"]: U["spkadd"].d_wr,
                uid["aw"]: U["aw"].d_wr,
                uid["trans"]: U["trans"].d_wr,
                uid["srow"]: U["srow"].d_wr,
                uid["norm"]: U["norm"].d_wr,
            },
        )
        connect_ports(m, active, v_rd, {uid["neuron"]: U["neuron"].v_rd})
        connect_ports(m, active, v_wr, {uid["nreset"]: U["nreset"].v_wr, uid["neuron"]: U["neuron"].v_wr})
        connect_ports(m, active, t_rd, {uid["neuron"]: U["neuron"].t_rd})
        connect_ports(m, active, t_wr, {uid["nreset"]: U["nreset"].t_wr, uid["neuron"]: U["neuron"].t_wr})
        connect_ports(
            m,
            active,
            s_r1,
            {
                uid["spkadd"]: U["spkadd"].s_rd,
                uid["aw"]: U["aw"].s_rd,
                uid["trans"]: U["trans"].s_rd,
                uid["srow"]: U["srow"].s_rd,
            },
        )
        connect_ports(m, active, s_r2, {uid["trans"]: U["trans"].s_rd2})
        connect_ports(
            m,
            active,
            s_wr,
            {uid["copy"]: U["copy"].s_wr, uid["neuron"]: U["neuron"].s_wr, uid["trans"]: U["trans"].s_wr},
        )
        connect_ports(
            m,
            active,
            q_r1,
            {uid["nreset"]: U["nreset"].q_rd, uid["neuron"]: U["neuron"].q_rd, uid["norm"]: U["norm"].q_rd},
        )
        connect_ports(m, active, q_r2, {uid["norm"]: U["norm"].q_rd2})
        connect_ports(m, active, w_rd, {uid["aw"]: U["aw"].w_rd})
        connect_ports(m, active, i_rd, {uid["aw"]: U["aw"].i_rd})

        # ---- sequencer ---------------------------------------------------------------------------------
        ins = Signal(instr_layout(p))
        pc = Signal(range(p.prog_depth))
        t = Signal(16)
        t_zero = Signal()
        m.d.comb += t_zero.eq(t == 0)
        fired = Signal()
        settle = Signal(16)
        settled = Signal()
        cycles = Signal(p.dw)
        counting = Signal()
        counters = Array(Signal(p.count_width, name=f"cnt{i}") for i in range(p.counters))
        cls_cycles = Array(Signal(p.dw, name=f"cyc_{n}") for n in CYCLE_CLASSES)
        cls = Signal(range(len(CYCLE_CLASSES)))
        for u in units.values():
            m.d.comb += [u.ins.eq(ins), u.t_zero.eq(t_zero)]
        with m.If(units["neuron"].fired):
            m.d.sync += fired.eq(1)
        with m.If(counting):
            m.d.sync += [cycles.eq(cycles + 1), cls_cycles[cls].eq(cls_cycles[cls] + 1)]
        in_exec = Signal()
        m.d.comb += cls.eq(len(CYCLE_CLASSES) - 1)
        with m.Switch(Mux(in_exec, ins.op, Op.END)):
            with m.Case(Op.AW):
                m.d.comb += cls.eq(ins.msrc)  # engine (weights) or attention (running sums)
            with m.Case(Op.TRANS, Op.SROW):
                m.d.comb += cls.eq(1)
            with m.Case(Op.SMX):
                m.d.comb += cls.eq(2)
            with m.Case(Op.LN):
                m.d.comb += cls.eq(3)
            with m.Case(Op.NEURON, Op.NRESET):
                m.d.comb += cls.eq(4)
            with m.Case(Op.SPKADD, Op.COPY):
                m.d.comb += cls.eq(5)
        k = Signal(aw)  # LOADIN / OUT beat counter
        obeat = Signal(aw)
        n_cnt_rows = -(-p.counters // P)
        n_cls_rows = -(-len(CYCLE_CLASSES) // P)

        with m.FSM():
            with m.State("FETCH"):
                m.d.comb += [p_rd.addr.eq(pc), p_rd.en.eq(1)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += ins.eq(p_rd.data)
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.sync += k.eq(0)
                with m.Switch(ins.op):
                    for op, name in op_unit.items():
                        with m.Case(op):
                            m.d.comb += units[name].start.eq(1)
                            m.d.sync += active.eq(uid[name])
                            m.next = "EXEC"
                    with m.Case(Op.LOADIN):
                        m.d.sync += [
                            t.eq(0),
                            fired.eq(0),
                            settled.eq(0),
                            settle.eq(0),
                            counting.eq(0),
                            cycles.eq(0),
                        ]
                        for i in range(p.counters):
                            m.d.sync += counters[i].eq(0)
                        for i in range(len(CYCLE_CLASSES)):
                            m.d.sync += cls_cycles[i].eq(0)
                        m.next = "LOAD"
                    with m.Case(Op.STEP):
                        m.next = "STEP"
                    with m.Case(Op.OUT):
                        m.d.sync += [counting.eq(0), obeat.eq(0)]
                        m.next = "OUT_READ"
                    with m.Default():  # END
                        m.d.sync += pc.eq(0)
                        m.next = "FETCH"
            with m.State("EXEC"):
                m.d.comb += in_exec.eq(1)
                for name, u in units.items():
                    with m.If((active == uid[name]) & u.done):
                        m.d.sync += [active.eq(0), pc.eq(pc + 1)]
                        if name in ("neuron", "norm"):
                            m.d.sync += counters[ins.tid].eq(counters[ins.tid] + u.count)
                        m.next = "FETCH"
            with m.State("LOAD"):
                m.d.comb += [self.i_stream.ready.eq(1), i_wr.addr.eq(k), i_wr.data.eq(self.i_stream.payload)]
                with m.If(self.i_stream.valid):
                    m.d.comb += i_wr.en.eq(1)
                    m.d.sync += k.eq(k + 1)
                    with m.If(k + 1 >= ins.count):
                        m.d.sync += [pc.eq(pc + 1), counting.eq(1)]
                        m.next = "FETCH"
            with m.State("STEP"):
                with m.If(~fired & (t != 0) & ~settled):
                    m.d.sync += [settled.eq(1), settle.eq(t)]
                with m.If((~fired & (t != 0)) | settled | (t + 1 >= ins.imm)):
                    m.d.sync += pc.eq(pc + 1)
                with m.Else():
                    m.d.sync += [t.eq(t + 1), fired.eq(0), pc.eq(prog.step_start)]
                m.next = "FETCH"
            with m.State("OUT_READ"):
                m.d.comb += [seq_drb.addr.eq(ins.dbase + obeat), seq_drb.en.eq(1)]
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                total = ins.count + n_cnt_rows + n_cls_rows + 1
                row = Signal(P * p.dw)
                with m.If(obeat < ins.count):
                    m.d.comb += row.eq(seq_drb.data)
                with m.Elif(obeat < ins.count + n_cnt_rows):
                    for r in range(n_cnt_rows):
                        with m.If(obeat == ins.count + r):
                            vals = [counters[r * P + i] if r * P + i < p.counters else 0 for i in range(P)]
                            m.d.comb += row.eq(_cat_lanes(vals, p.dw))
                with m.Elif(obeat < ins.count + n_cnt_rows + n_cls_rows):
                    for r in range(n_cls_rows):
                        with m.If(obeat == ins.count + n_cnt_rows + r):
                            n_cls = len(CYCLE_CLASSES)
                            vals = [cls_cycles[r * P + i] if r * P + i < n_cls else 0 for i in range(P)]
                            m.d.comb += row.eq(_cat_lanes(vals, p.dw))
                with m.Else():
                    steps = Signal(16)
                    m.d.comb += steps.eq(t + 1)
                    settle_v = Signal(p.dw)
                    m.d.comb += settle_v.eq(settle)
                    with m.If(~settled):
                        m.d.comb += settle_v.eq(-1)
                    m.d.comb += row.eq(_cat_lanes([settle_v, steps, cycles] + [0] * (P - 3), p.dw))
                m.d.comb += [
                    self.o_stream.valid.eq(1),
                    self.o_stream.payload.data.eq(row),
                    self.o_stream.payload.last.eq(obeat + 1 >= total),
                ]
                with m.If(self.o_stream.ready):
                    m.d.sync += obeat.eq(obeat + 1)
                    with m.If(obeat + 1 >= total):
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "FETCH"
                    with m.Else():
                        m.next = "OUT_READ"

        if self.with_trace:
            nu = units["neuron"]
            m.d.comb += [
                self.spike_trace.valid.eq(nu.trace_valid),
                self.spike_trace.step.eq(t),
                self.spike_trace.row.eq(nu.trace_row),
                self.spike_trace.spikes.eq(nu.trace_spikes),
            ]
        return m


class _Port:
    """The sequencer's own read-port member (same attributes as a unit's ReadPort member)."""

    def __init__(self, aw: int, dw: int):
        self.addr = Signal(aw, name="seq_addr")
        self.en = Signal(name="seq_en")
        self.data = Signal(dw, name="seq_data")


def _cat_lanes(vals, width: int):
    """Pack unsigned lane values (ints or Amaranth values, zero-extended or truncated) into a row."""
    from amaranth.hdl import Cat, Const, Value

    parts = []
    for v in vals:
        if isinstance(v, int):
            parts.append(Const(v & ((1 << width) - 1), width))
            continue
        vv = Value.cast(v).as_unsigned()
        parts.append(vv[:width] if len(vv) >= width else Cat(vv, Const(0, width - len(vv))))
    return Cat(*parts)
