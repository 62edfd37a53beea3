"""Block RAM with a registered read output: inferred for simulation, ECP5 ``DP16KD`` or
``PDPW16KD`` for synthesis."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import C, Cat, ClockSignal, Const, Instance, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._carry import kept_reg
from ._util import check_int

__all__ = ["RegisteredRAM", "RAM_TARGETS", "DP16KD_MODES", "PDPW16KD_MODE"]

#: ``target`` values: ``None`` simulation model (read/write collisions poisoned), ``"generic"``
#: inferred memory (any FPGA), ``"ecp5"`` ``PDPW16KD`` or ``DP16KD`` instances with their
#: output register
RAM_TARGETS = (None, "generic", "ecp5")

#: DP16KD data-width modes: (data bits, words, address bits below the word address). In the 18-bit
#: mode address bits 1..0 are the byte enables of a write and bits 3..2 are unused (as in Yosys'
#: ``share/lattice/brams_map_16kd.v``).
DP16KD_MODES = ((18, 1024, 4), (9, 2048, 3), (4, 4096, 2), (2, 8192, 1), (1, 16384, 0))

#: The pseudo-dual-port ``PDPW16KD`` in its 36-bit mode, in the layout of :data:`DP16KD_MODES`:
#: 36 data bits, 512 words; the read address is ``ADR[13:5]`` (``ADR[4:0]`` unused, tied 0), the
#: write address the 9-bit ``ADW[8:0]`` with the byte enables ``BE[3:0]`` beside it.
PDPW16KD_MODE = (36, 512, 5)


def dp16kd_mode(depth: int) -> tuple[int, int, int]:
    """The widest ``DP16KD`` mode that holds ``depth`` words."""
    for mode in DP16KD_MODES:
        if depth <= mode[1]:
            return mode
    raise ValueError(f"RegisteredRAM: depth {depth} exceeds one DP16KD column (16384 words); "
                     f"split the memory by address")


def dp16kd_initvals(words: Sequence[int]) -> dict[str, Const]:
    """``INITVAL_00..3F`` of an 18-bit-mode ``DP16KD``: 16 words per value, word ``i`` in bits
    ``20·i .. 20·i+17`` (the layout of Yosys' ``brams_map_16kd.v``)."""
    vals = {}
    for k in range(64):
        v = 0
        for i, w in enumerate(words[16 * k:16 * k + 16]):
            v |= (int(w) & 0x3FFFF) << (20 * i)
        if v:
            vals[f"p_INITVAL_{k:02X}"] = Const(v, 320)
    return vals


class RegisteredRAM(wiring.Component):
    """Simple dual-port RAM (one write port, one read port) whose read data is registered twice:
    the block RAM's own read register and its output register.

    What it computes
    ----------------
    Write: at a clock edge with ``w_en``, word ``w_addr`` becomes ``w_data``.
    Read: at an edge with ``r_en`` the word at ``r_addr`` is read into the first register; at an
    edge with ``r_oen`` the first register is copied to ``r_data``. With both enables high,
    ``r_data`` is the word at ``r_addr`` two cycles earlier (latency 2), one read per cycle.
    Holding ``r_en``/``r_oen`` low holds the respective register (back-pressure).

    A read at the edge that writes the same word returns an undefined value on the FPGA
    (``DP16KD`` ports in ``NORMAL`` write mode; for ``PDPW16KD``, which has no write mode, we
    know of no statement of it). The simulation model (``target=None``) returns
    the bitwise complement of the old word then, so a design that consumed such a read fails its
    bit-exact tests instead of depending on an unspecified value.

    Why
    ---
    An ECP5 ``DP16KD`` read without its output register has a 5.6--5.8 ns clock-to-out in
    nextpnr's timing model, more than a 200 MHz period; with ``REGMODE = OUTREG`` the data leaves a
    register inside the block. Yosys 0.64 does not fold a fabric register into the block RAM, so
    ``target="ecp5"`` instantiates the primitive (:attr:`primitive`), one of two forms:

    * ``PDPW16KD`` (pseudo dual port, 36-bit write and read ports, 512 words) when the RAM has
      no initial contents (``init`` empty or all zero) and ``words <= 512``:
      ``ceil(width / 36)`` columns, half the blocks of the 18-bit ``DP16KD`` form for wide
      words (a true-dual-port ``DP16KD`` is at most 18 bits wide per port; only the
      pseudo-dual-port primitive gangs both data paths of the block into one 36-bit write and
      one 36-bit read port, which is all this RAM needs). ``CEW = w_en`` (all four byte
      enables set), ``CER = r_en``, ``OCER = r_oen``, ``REGMODE = OUTREG``.
    * ``DP16KD`` otherwise: ``ceil(width / m)`` columns in the widest mode ``m`` bits ×
      ``words`` that holds ``depth`` (see :data:`DP16KD_MODES`), port A writing, port B reading
      through ``OUTREG`` (``CEB = r_en``, ``OCEB = r_oen``). Initial contents stay on this
      form: its ``INITVAL`` layout (18-bit mode) is the one Yosys' ``brams_map_16kd.v`` and our
      model agree on, while the 36-bit layout (which ``INITVAL`` slot holds which half of a
      word) is not pinned down by a source we can check.

    The behavioural models for Verilator runs are ``sim/models/DP16KD.v`` and
    ``sim/models/PDPW16KD.v`` (:data:`equispike.sim.build.ECP5_RAM_MODELS`).

    Parameters
    ----------
    shape : ShapeLike
        Word shape (its width is what is stored).
    depth : int
        Words (2..16384 for ``"ecp5"``).
    init : sequence of int, optional
        Initial contents (words as unsigned integers of the shape's width); with
        ``target="ecp5"`` any non-zero word selects the ``DP16KD`` form, and only in its 18-bit
        mode (``words <= 1024``).
    target : {None, "generic", "ecp5"}
        See :data:`RAM_TARGETS`.
    addr_regs : int
        Register ``w_addr``, ``w_en`` and ``r_addr`` first, through this many registers (0..2),
        one chain per block-RAM column on ECP5 (one address register fanning out to every
        column of a wide RAM is a 7-ns net there; a second one halves the route from wherever
        the address is computed): a write then lands ``addr_regs`` cycles after
        ``w_addr``/``w_en`` are presented, with the ``w_data`` of that later cycle, and
        ``r_data`` belongs to the ``r_addr`` of ``2 + read_addr_regs`` cycles before
        (``r_en``/``r_oen`` are not delayed). On ECP5 the copies are ``TRELLIS_FF``
        instances (:func:`~equispike.rtl._carry.kept_reg`), which synthesis cannot merge, and the
        write enable is folded into the address (an extra, never read word, address ``depth``,
        takes the writes of the cycles without ``w_en``): no enable net.
    read_addr_regs : int, optional
        Registers on ``r_addr`` (0..2, per column as above); default ``addr_regs``. Fewer than
        ``addr_regs`` when the reader needs the shorter read latency (a queue whose write side
        is far from the RAM but whose read address is local to it); more when only the read
        address fans out far (a wide parameter RAM written rarely: its write side then stays
        unregistered, ``w_en`` on the write-enable pin).
    dummy_write_addr : bool, optional
        With ``addr_regs``: ``w_addr`` also takes the value ``depth``, the dummy word (a write
        to it is no write). A caller that folds its write enable into a registered address
        (``w_en`` held 1, ``w_addr = depth`` for no write) leaves no logic between its
        register and the columns' first address registers, a route across the RAM's columns.
    read_addr_group : int, optional
        With ``read_addr_regs`` on ECP5: block-RAM columns sharing the first read-address
        register (default 1: a chain per column). A tree: the address's source then drives
        ``ceil(columns / read_addr_group)`` registers instead of one per column, and stays
        where it is computed rather than among the columns.

    Attributes
    ----------
    words : int
        Words held: ``depth``, plus the dummy word that takes the disabled writes with
        ``addr_regs``.
    primitive : {"PDPW16KD", "DP16KD"} or None
        The ECP5 block-RAM primitive instantiated (``target="ecp5"``), else ``None``.
    mode : tuple of int or None
        ``(data bits, words, address bits below the word address)`` of one column:
        :data:`PDPW16KD_MODE` or an entry of :data:`DP16KD_MODES` (``target="ecp5"``), else
        ``None``.
    """

    def __init__(self, shape, depth: int, *, init: Sequence[int] = (), target: str | None = None,
                 addr_regs: int = 0, read_addr_regs: int | None = None, read_addr_group: int = 1,
                 dummy_write_addr: bool = False):
        if target not in RAM_TARGETS:
            raise ValueError(f"RegisteredRAM target must be one of {RAM_TARGETS}, got {target!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"RegisteredRAM depth must be an int >= 2, got {depth!r}")
        self.width = Shape.cast(shape).width
        if self.width < 1:
            raise ValueError("RegisteredRAM words must be at least 1 bit wide")
        self.depth = depth
        self.addr_regs = check_int("addr_regs", int(addr_regs), 0, 2)
        self.read_addr_regs = self.addr_regs if read_addr_regs is None else \
            check_int("read_addr_regs", int(read_addr_regs), 0, 2)
        self.read_addr_group = check_int("read_addr_group", int(read_addr_group), 1, 1 << 14)
        if self.read_addr_group > 1 and self.read_addr_regs < 1:
            raise ValueError(f"RegisteredRAM read_addr_group={read_addr_group} needs "
                             f"read_addr_regs >= 1 (the shared first register), got "
                             f"{self.read_addr_regs}")
        self._ra_shared: dict[int, Value] = {}
        self.dummy_write_addr = bool(dummy_write_addr)
        if self.dummy_write_addr and not self.addr_regs:
            raise ValueError("RegisteredRAM dummy_write_addr needs addr_regs >= 1 (the dummy "
                             "word exists only with registered write addresses)")
        self.target = target
        # with addr_regs: one dummy word after the data takes the writes without w_en
        self.words = depth + 1 if self.addr_regs else depth
        self.init = [int(x) for x in init]
        if len(self.init) > depth:
            raise ValueError(f"RegisteredRAM init has {len(self.init)} words for depth {depth}")
        if any(x < 0 or x >> self.width for x in self.init):
            raise ValueError(f"RegisteredRAM init words must be unsigned {self.width}-bit integers")
        self.primitive, self.mode = None, None
        if target == "ecp5":
            if not any(self.init) and self.words <= PDPW16KD_MODE[1]:
                self.primitive, self.mode = "PDPW16KD", PDPW16KD_MODE
            else:
                self.primitive, self.mode = "DP16KD", dp16kd_mode(self.words)
                if any(self.init) and self.mode[0] != 18:
                    extra = " (depth + 1: the dummy word of addr_regs)" if self.addr_regs else ""
                    raise ValueError(
                        f"RegisteredRAM: initial contents need the DP16KD 18-bit mode (at most "
                        f"1024 words), got {self.words} words{extra} for depth {depth}")
        super().__init__({
            # (with dummy_write_addr also the dummy word, see the class docstring)
            "w_addr": In(range(self.words if self.dummy_write_addr else depth)),
            "w_data": In(shape),
            "w_en": In(1),
            "r_addr": In(range(depth)),
            "r_en": In(1, init=1),
            "r_oen": In(1, init=1),
            "r_data": Out(shape),
        })

    @property
    def columns(self) -> int:
        """Number of block-RAM primitives (:attr:`primitive`; ``target="ecp5"`` only)."""
        if self.mode is None:
            raise ValueError(f"RegisteredRAM.columns: only defined for target='ecp5', "
                             f"not {self.target!r}")
        return -(-self.width // self.mode[0])

    def _addresses(self, m: Module, copy: int = 0):
        """(write address, write enable, read address) as the RAM sees them: the ports, or with
        ``addr_regs`` / ``read_addr_regs`` registered copies (``copy`` picks a distinct initial
        value)."""
        aw = Shape.cast(range(self.words)).width
        if self.addr_regs:
            # (the dummy word may need one address bit more than the ports have)
            wa = Cat(Mux(self.w_en, self.w_addr, self.depth), C(0, aw))[:aw]
            we = C(1, 1)
        else:
            wa, we = self.w_addr, self.w_en
        for st in range(self.addr_regs):
            if self.target == "ecp5":
                # TRELLIS_FF instances: Yosys would merge equal plain registers back into one
                wa = Cat(*[kept_reg(m, wa[i], target="ecp5", name=f"wa{copy}_{st}_{i}",
                                    init=(self.depth >> i) & 1) for i in range(aw)])
            else:
                wq = Signal(range(self.words), name=f"wa{copy}_{st}", init=self.depth,
                            reset_less=True)
                m.d.sync += wq.eq(wa)
                wa = wq
        ra = Cat(self.r_addr, C(0, aw))[:aw] if self.read_addr_regs else self.r_addr
        for st in range(self.read_addr_regs):
            if self.target == "ecp5" and st == 0 and self.read_addr_group > 1:
                group = copy // self.read_addr_group
                if group not in self._ra_shared:
                    self._ra_shared[group] = Cat(*[
                        kept_reg(m, ra[i], target="ecp5", name=f"rag{group}_{i}")
                        for i in range(aw)])
                ra = self._ra_shared[group]
            elif self.target == "ecp5":
                ra = Cat(*[kept_reg(m, ra[i], target="ecp5", name=f"ra{copy}_{st}_{i}")
                           for i in range(aw)])
            else:
                rq = Signal(range(self.words), name=f"ra{copy}_{st}", reset_less=True)
                m.d.sync += rq.eq(ra)
                ra = rq
        return wa, we, ra

    def elaborate(self, platform):
        m = Module()
        self._ra_shared = {}        # (per elaboration: the shared first read-address registers)
        if self.primitive == "PDPW16KD":
            self._elaborate_pdpw16kd(m)
            return m
        if self.primitive == "DP16KD":
            self._elaborate_dp16kd(m)
            return m
        mem = Memory(shape=unsigned(self.width), depth=self.words,
                     init=self.init + [0] * (self.words - len(self.init)) if self.init else [],
                     attrs={"no_rw_check": 1, "ram_style": "block"})
        m.submodules.mem = mem
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        q = Signal(self.width, reset_less=True)
        w_addr, w_en, r_addr = self._addresses(m)
        m.d.comb += [wp.addr.eq(w_addr), wp.data.eq(Value.cast(self.w_data)),
                     wp.en.eq(w_en), rp.addr.eq(r_addr), rp.en.eq(self.r_en)]
        read = rp.data
        if self.target is None:
            collided = Signal()
            with m.If(self.r_en):
                m.d.sync += collided.eq(w_en & (w_addr == r_addr))
            read = rp.data ^ Mux(collided, (1 << self.width) - 1, 0)
        with m.If(self.r_oen):
            m.d.sync += q.eq(read)
        m.d.comb += Value.cast(self.r_data).eq(q)
        return m

    def _elaborate_dp16kd(self, m: Module) -> None:
        bits, _, low = self.mode
        abits = 14 - low
        # 18-bit mode: address bits 1..0 are byte enables (both bytes written), 3..2 unused
        low_a = C(0b11, 4) if bits == 18 else C(0, low)
        w_data, r_data = Value.cast(self.w_data), Value.cast(self.r_data)
        for k, lo in enumerate(range(0, self.width, bits)):
            w_addr, w_en, r_addr = self._addresses(m, k)
            ada = Cat(low_a, w_addr, C(0, abits))[:14]
            adb = Cat(C(0, low), r_addr, C(0, abits))[:14]
            hi = min(self.width, lo + bits)
            di = Cat(w_data[lo:hi], C(0, 18))[:18]
            do = Signal(18, name=f"col{k}_do")
            ports = {f"i_ADA{i}": ada[i] for i in range(14)}
            ports.update({f"i_ADB{i}": adb[i] for i in range(14)})
            ports.update({f"i_DIA{i}": di[i] for i in range(18)})
            ports.update({f"i_DIB{i}": 0 for i in range(18)})
            ports.update({f"o_DOB{i}": do[i] for i in range(18)})
            unused = Signal(18, name=f"col{k}_doa")     # port A only writes
            ports.update({f"o_DOA{i}": unused[i] for i in range(18)})
            for p in ("A", "B"):
                ports.update({f"i_CLK{p}": ClockSignal(), f"i_RST{p}": 0,
                              f"i_CS{p}0": 0, f"i_CS{p}1": 0, f"i_CS{p}2": 0})
            init = [(w >> lo) & ((1 << (hi - lo)) - 1) for w in self.init]
            m.submodules[f"col{k}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits, p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_CSDECODE_A="0b000",
                p_CSDECODE_B="0b000", p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                p_GSR="DISABLED", **dp16kd_initvals(init),
                i_WEA=w_en, i_CEA=1, i_OCEA=1, i_WEB=0, i_CEB=self.r_en, i_OCEB=self.r_oen,
                **ports)
            m.d.comb += r_data[lo:hi].eq(do[:hi - lo])

    def _elaborate_pdpw16kd(self, m: Module) -> None:
        bits, _, low = self.mode
        w_data, r_data = Value.cast(self.w_data), Value.cast(self.r_data)
        for k, lo in enumerate(range(0, self.width, bits)):
            w_addr, w_en, r_addr = self._addresses(m, k)
            adw = Cat(w_addr, C(0, 9))[:9]
            # 36-bit read mode: word address ADR[13:5], ADR[4:0] unused (tied 0)
            adr = Cat(C(0, low), r_addr, C(0, 14))[:14]
            hi = min(self.width, lo + bits)
            di = Cat(w_data[lo:hi], C(0, bits))[:bits]
            do = Signal(bits, name=f"col{k}_do")
            ports = {f"i_DI{i}": di[i] for i in range(bits)}
            ports.update({f"o_DO{i}": do[i] for i in range(bits)})
            ports.update({f"i_ADW{i}": adw[i] for i in range(9)})
            ports.update({f"i_ADR{i}": adr[i] for i in range(14)})
            # whole-word writes: every byte enable set, the write enable is CEW
            ports.update({f"i_BE{i}": 1 for i in range(4)})
            ports.update({f"i_CS{p}{i}": 0 for p in ("W", "R") for i in range(3)})
            m.submodules[f"col{k}"] = Instance(
                "PDPW16KD",
                p_DATA_WIDTH_W=bits, p_DATA_WIDTH_R=bits, p_REGMODE="OUTREG", p_RESETMODE="SYNC",
                p_ASYNC_RESET_RELEASE="SYNC", p_CSDECODE_W="0b000", p_CSDECODE_R="0b000",
                p_GSR="DISABLED",
                i_CLKW=ClockSignal(), i_CEW=w_en, i_CLKR=ClockSignal(), i_CER=self.r_en,
                i_OCER=self.r_oen, i_RST=0,
                **ports)
            m.d.comb += r_data[lo:hi].eq(do[:hi - lo])
