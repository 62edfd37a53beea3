"""The core: one programmable machine that runs a whole exported model (SPEC §7, §9, §11).

Its logic is set by :class:`~equispike.compiler.isa.CoreParams` (lanes, memory depths, word
widths), never by the model: a compiled :class:`~equispike.compiler.program.Program` supplies the
instructions and the memory contents. A bigger model needs deeper memories and more cycles, not
more logic.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, Value, unsigned
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

__all__ = ["Core", "CYCLE_CLASSES", "STATUS_FIELDS", "out_rows", "count_lanes", "count_rows", "lane_bits"]

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


def count_lanes(params: CoreParams) -> int:
    """``dw``-bit lanes that carry one ``count_width``-bit count in the output beats."""
    return -(-params.count_width // params.dw)


def count_rows(params: CoreParams, n: int) -> int:
    """Output beats of ``n`` counts: each count takes :func:`count_lanes` consecutive lanes, least
    significant first, and the counts follow each other across beats (lane ``P − 1`` of one beat,
    then lane 0 of the next)."""
    return -(-n * count_lanes(params) // params.lanes)


def out_rows(params: CoreParams, logits_rows: int) -> int:
    """Output beats of one inference: logits rows, counter rows, cycle-class rows, status rows."""
    p = params
    return (
        logits_rows
        + count_rows(p, p.counters)
        + count_rows(p, len(CYCLE_CLASSES))
        + count_rows(p, len(STATUS_FIELDS))
    )


class Core(wiring.Component):
    """A model-independent spiking-transformer core running a compiled program.

    Host interface
    --------------
    ``i_stream``: the image, ``Program.input_rows`` beats of ``P`` lanes of ``iw``-bit codes
    (patch-major, ``compiler.program.image_rows``). ``o_stream``: per inference,
    :func:`out_rows` beats of ``P`` lanes of ``dw`` bits, ``last`` on the final one: the logits
    rows, then three sections of ``count_width``-bit counts, each count in :func:`count_lanes`
    lanes (so ``dw`` follows the model's values, not the counts; :func:`count_rows`): the event
    counters (``Program.counters``), the cycles per class (:data:`CYCLE_CLASSES`), and the status
    (:data:`STATUS_FIELDS`: settle step or −1, steps run, cycles from the image's last input beat
    to the first output beat).

    Memories
    --------
    ``D`` is two memories, the banks of rows below and from ``d_split``; each of the core's two
    ``D`` reads of a cycle (ports A and B) goes to the bank of its address and the compiler keeps
    them in different banks, so each bank has one read and one write port (one block RAM copy
    where two read ports would duplicate it).
    ``spike_trace`` (if ``trace=True``): every spike row of every ``NEURON`` instruction as it is
    written (``valid`` for one cycle, no back-pressure), with the step and the ``S`` row.

    Timing
    ------
    An instruction that follows a unit's instruction costs one dispatch cycle plus its unit's items
    (one row per cycle, see :mod:`equispike.rtl.core.units`): the next instruction is fetched while
    the unit runs. After a jump (``STEP``), ``LOADIN`` and ``OUT`` it takes two more cycles of fetch
    and decode. ``o_stream`` holds each beat until ``ready``.

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

        init = {k: _pack_rows(v, lane_bits(p, k)) for k, v in prog.images.items() if v.size}
        d_init = init.get("D", [])
        dbanks = (
            mem("d0", P * p.dw, p.d_split, d_init[: p.d_split]),
            mem("d1", P * p.dw, p.d_depth - p.d_split, d_init[p.d_split :]),
        )
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

        d_wr = _Port(aw, P * p.dw, "d_w")
        d_ra = _Port(aw, P * p.dw, "d_a")
        d_rb = _Port(aw, P * p.dw, "d_b")
        _connect_banks(m, dbanks, p.d_split, (d_ra, d_rb), d_wr)
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
            read=True,
            users={
                uid["copy"]: U["copy"].d_rd,
                uid["neuron"]: U["neuron"].d_rd,
                uid["spkadd"]: U["spkadd"].d_rd,
                uid["aw"]: U["aw"].d_rd,
                uid["trans"]: U["trans"].d_rd,
                uid["srow"]: U["srow"].d_rd,
                uid["norm"]: U["norm"].d_rd,
            },
        )
        seq_drb = _Port(aw, P * p.dw, "seq")
        connect_ports(
            m,
            active,
            d_rb,
            read=True,
            users={
                0: seq_drb,
                uid["copy"]: U["copy"].d_rdb,
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
            read=False,
            users={
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
        connect_ports(m, active, s_r2, {uid["trans"]: U["trans"].s_rd2, uid["srow"]: U["srow"].s_rd2})
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
        cycles = Signal(p.count_width)
        counting = Signal()
        counters = Array(Signal(p.count_width, name=f"cnt{i}") for i in range(p.counters))
        cls_cycles = Array(Signal(p.count_width, name=f"cyc_{n}") for n in CYCLE_CLASSES)
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
        n_cnt_rows = count_rows(p, p.counters)
        n_cls_rows = count_rows(p, len(CYCLE_CLASSES))
        n_st_rows = count_rows(p, len(STATUS_FIELDS))

        with m.FSM():
            with m.State("FETCH"):
                m.d.comb += [p_rd.addr.eq(pc), p_rd.en.eq(1)]
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += ins.eq(p_rd.data)
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                # prefetch: the next instruction is read while this one runs, so a unit's last
                # cycle can hand over to the next instruction without a fetch round trip
                m.d.comb += [p_rd.addr.eq(pc + 1), p_rd.en.eq(1)]
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
                m.d.comb += [in_exec.eq(1), p_rd.addr.eq(pc + 1), p_rd.en.eq(1)]
                for name, u in units.items():
                    with m.If((active == uid[name]) & u.done):
                        m.d.sync += [active.eq(0), pc.eq(pc + 1), ins.eq(p_rd.data)]
                        if name in ("neuron", "norm"):
                            m.d.sync += counters[ins.tid].eq(counters[ins.tid] + u.count)
                        m.next = "DISPATCH"
            with m.State("LOAD"):
                m.d.comb += [self.i_stream.ready.eq(1), i_wr.addr.eq(k), i_wr.data.eq(self.i_stream.payload)]
                with m.If(self.i_stream.valid):
                    m.d.comb += i_wr.en.eq(1)
                    m.d.sync += k.eq(k + 1)
                    with m.If(k + 1 >= ins.count):
                        m.d.sync += [pc.eq(pc + 1), counting.eq(1)]
                        m.next = "FETCH"
            with m.State("STEP"):
                quiet = ~ins.fixed & ~fired & (t != 0)  # fixed: exactly imm steps, no settling
                with m.If(quiet & ~settled):
                    m.d.sync += [settled.eq(1), settle.eq(t)]
                with m.If(quiet | settled | (t + 1 >= ins.imm)):
                    m.d.sync += pc.eq(pc + 1)
                with m.Else():
                    m.d.sync += [t.eq(t + 1), fired.eq(0), pc.eq(prog.step_start)]
                m.next = "FETCH"
            with m.State("OUT_READ"):
                m.d.comb += [seq_drb.addr.eq(ins.dbase + obeat), seq_drb.en.eq(1)]
                m.next = "OUT_SEND"
            with m.State("OUT_SEND"):
                total = ins.count + n_cnt_rows + n_cls_rows + n_st_rows
                row = Signal(P * p.dw)
                steps = Signal(16)
                settle_v = Signal(p.count_width)
                m.d.comb += [steps.eq(t + 1), settle_v.eq(Mux(settled, settle, -1))]
                sections = [
                    list(counters),
                    list(cls_cycles),
                    [settle_v, steps, cycles],
                ]
                with m.If(obeat < ins.count):
                    m.d.comb += row.eq(seq_drb.data)
                first = ins.count
                for vals in sections:
                    rows = _count_beats(vals, p)
                    for r, beat in enumerate(rows):
                        with m.If(obeat == first + r):
                            m.d.comb += row.eq(beat)
                    first = first + len(rows)
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
    """A port's ``addr``, ``en`` and ``data`` signals: the sequencer's own read-port member, and the
    core's ``D`` ports before they are routed to a bank (:func:`_connect_banks`)."""

    def __init__(self, aw: int, dw: int, name: str):
        self.addr = Signal(aw, name=f"{name}_addr")
        self.en = Signal(name=f"{name}_en")
        self.data = Signal(dw, name=f"{name}_data")


def _connect_banks(m: Module, banks, split: int, reads, wr: _Port) -> None:
    """Route the read ports ``reads`` and the write port ``wr`` of a memory of rows
    ``0 … split − 1`` (``banks[0]``) and ``split …`` (``banks[1]``) to the banks.

    Each bank has one write port and one read port, transparent for it (port A's read-modify-write
    needs that; port B never reads the row written in the same cycle, so it sees the same data). A
    bank serves the first read port that addresses it in a cycle; the compiler keeps a cycle's
    reads in different banks. A read port's data is the bank it addressed last, held while the
    port is idle (its bank is read only by it or by no port meanwhile).
    """
    offsets = (0, split)
    wports = [b.write_port() for b in banks]
    rports = [b.read_port(transparent_for=(w,)) for b, w in zip(banks, wports, strict=True)]

    def in_bank(addr, k: int):
        return addr >= split if k else addr < split

    for k, (w, off) in enumerate(zip(wports, offsets, strict=True)):
        m.d.comb += [w.addr.eq(wr.addr - off), w.data.eq(wr.data), w.en.eq(wr.en & in_bank(wr.addr, k))]
    for k, (rp, off) in enumerate(zip(rports, offsets, strict=True)):
        m.d.comb += rp.en.eq(0)
        # the last assignment wins: the first read port that addresses the bank drives it
        for port in reversed(reads):
            with m.If(port.en & in_bank(port.addr, k)):
                m.d.comb += [rp.addr.eq(port.addr - off), rp.en.eq(1)]
    for i, port in enumerate(reads):
        high = Signal(name=f"rd{i}_bank")
        with m.If(port.en):
            m.d.sync += high.eq(in_bank(port.addr, 1))
        m.d.comb += port.data.eq(Mux(high, rports[1].data, rports[0].data))


def _count_beats(vals, p: CoreParams) -> list:
    """The output beats of the counts ``vals``: each ``count_width`` bits, zero-extended to
    :func:`count_lanes` lanes, the counts one after the other across the beats."""
    from amaranth.hdl import Cat

    from .ports import fit

    width = count_lanes(p) * p.dw
    bits = Cat(*(fit(Value.cast(v).as_unsigned(), width) for v in vals))
    beat = p.lanes * p.dw
    return [fit(bits[r * beat : (r + 1) * beat], beat) for r in range(count_rows(p, len(vals)))]
