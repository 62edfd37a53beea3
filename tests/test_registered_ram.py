"""RegisteredRAM (rtl/_bram.py): the inferred form and the ECP5 ``DP16KD`` form (under Verilator, with
our behavioural model ``sim/models/DP16KD.v``) against a cycle-by-cycle reference; every read compared.

The reference is the contract of :class:`~equispike.rtl._bram.RegisteredRAM`: a read register
loaded from the word at ``r_addr`` when ``r_en`` (the complement of the old word if the same word is
written at that edge: undefined on the device, poisoned in simulation), an output register loaded from
it when ``r_oen``, writes when ``w_en``.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import unsigned

from equispike.rtl._bram import RegisteredRAM
from equispike.sim.amaranth_tb import run_testbenches

try:
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None

MODULE = "equispike.tests.test_registered_ram"


class ReferenceRAM:
    """Cycle model of the RegisteredRAM contract."""

    def __init__(self, width: int, depth: int, init, addr_regs: int = 0,
                 read_addr_regs: int | None = None):
        self.mask = (1 << width) - 1
        self.mem = list(init) + [0] * (depth - len(init))
        self.latch = 0
        self.out = 0
        # (w_en, w_addr) and r_addr of the last addr_regs / read_addr_regs cycles, oldest first
        self.prev_w = [(False, 0)] * int(addr_regs)
        self.prev_r = [0] * int(addr_regs if read_addr_regs is None else read_addr_regs)

    def edge(self, w_en, w_addr, w_data, r_en, r_oen, r_addr) -> int:
        if self.prev_w:                 # the RAM sees delayed addresses and write enable
            self.prev_w.append((w_en, w_addr))
            w_en, w_addr = self.prev_w.pop(0)
        if self.prev_r:
            self.prev_r.append(r_addr)
            r_addr = self.prev_r.pop(0)
        latch = self.latch
        self.collided = bool(r_en and w_en and w_addr == r_addr)   # as the RAM sees them
        if r_en:
            latch = self.mem[r_addr] ^ (self.mask if w_en and w_addr == r_addr else 0)
        if r_oen:
            self.out = self.latch
        self.latch = latch
        if w_en:
            self.mem[w_addr] = w_data
        return self.out


def stimulus(seed: int, width: int, depth: int, cycles: int, collide: float, lag: int = 0):
    """Random writes/reads/enables; word addresses biased towards a few hot words, the ends and
    read-write collisions (probability ``collide``). ``lag``: cycles by which the RAM sees a
    write later than a read presented in the same cycle (``addr_regs - read_addr_regs``), for
    avoiding collisions with ``collide = 0``."""
    rng = random.Random(seed)
    hot = [0, 1, depth - 1, rng.randrange(depth)]
    past = [(False, 0)] * lag       # the last ``lag`` writes presented, oldest first
    for _ in range(cycles):
        w_addr = rng.choice(hot) if rng.random() < 0.3 else rng.randrange(depth)
        w_data = rng.choice([0, (1 << width) - 1, rng.getrandbits(width)])
        r_addr = w_addr if rng.random() < collide else (
            rng.choice(hot) if rng.random() < 0.3 else rng.randrange(depth))
        w_en, r_en = rng.random() < 0.5, rng.random() < 0.8
        landing = past[0] if lag else (w_en, w_addr)   # the write the RAM sees with this read
        if collide == 0 and landing[0] and landing[1] == r_addr:
            r_addr = (r_addr + 1) % depth   # no collisions at all in this mode
        if lag:
            past = past[1:] + [(w_en, w_addr)]
        yield (w_en, w_addr, w_data, r_en, rng.random() < 0.8, r_addr)


CONFIGS = {
    # 40 bits, 100 words with contents: three 18-bit DP16KD columns
    "x18_init": dict(width=40, depth=100, init=True),
    # 1500 words: the 9-bit mode (address bits 13..3), three columns
    "x9": dict(width=20, depth=1500, init=False),
    # registered addresses (one copy per column), 18-bit mode with contents
    "x18_addr_regs": dict(width=40, depth=100, init=True, addr_regs=1),
    "x18_addr_regs2": dict(width=40, depth=100, init=True, addr_regs=2),
    # registered write side only (the neuron array's output queue)
    "x18_write_regs": dict(width=40, depth=100, init=True, addr_regs=1, read_addr_regs=0),
}


def make_cfg(name: str, target: str | None) -> dict:
    c = dict(CONFIGS[name], name=name, target=target, seed=sum(map(ord, name)), cycles=3000)
    rng = random.Random(c["seed"])
    c["init_words"] = ([rng.getrandbits(c["width"]) for _ in range(c["depth"])]
                       if c["init"] else [])
    return c


def make_dut(cfg: dict) -> RegisteredRAM:
    return RegisteredRAM(unsigned(cfg["width"]), cfg["depth"], init=cfg["init_words"],
                         target=cfg["target"], addr_regs=cfg.get("addr_regs", 0),
                         read_addr_regs=cfg.get("read_addr_regs"))


if cocotb is not None:
    from cocotb.clock import Clock
    from cocotb.triggers import ReadOnly, RisingEdge, Timer

    from equispike.sim.streams import as_int

    @cocotb.test()
    async def ram_random(dut):
        """Every cycle random ports, first without then with read/write collisions, in one run
        (a restarted clock would replay the last inputs); ``r_data`` compared after every edge."""
        from equispike.sim import tb_config

        cfg = tb_config()
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 0
        dut.w_en.value = 0
        dut.r_en.value = 0
        dut.r_oen.value = 0
        dut.w_addr.value = 0
        dut.r_addr.value = 0
        ref = ReferenceRAM(cfg["width"], cfg["depth"], cfg["init_words"], cfg.get("addr_regs", 0),
                       cfg.get("read_addr_regs"))
        for _ in range(3):              # idle edges: the address registers hold the idle values
            await RisingEdge(dut.clk)
            ref.edge(False, 0, 0, False, False, 0)
        await Timer(1, unit="ns")
        compared = 0
        for collide in (0.0, 0.2):
            for k, (w_en, w_addr, w_data, r_en, r_oen, r_addr) in enumerate(
                    stimulus(cfg["seed"] + int(collide * 10), cfg["width"], cfg["depth"],
                             cfg["cycles"], collide)):
                dut.w_en.value, dut.w_addr.value, dut.w_data.value = int(w_en), w_addr, w_data
                dut.r_en.value, dut.r_oen.value, dut.r_addr.value = int(r_en), int(r_oen), r_addr
                await RisingEdge(dut.clk)
                exp = ref.edge(w_en, w_addr, w_data, r_en, r_oen, r_addr)
                await ReadOnly()
                got = as_int(dut.r_data.value)
                assert got == exp, (f"first mismatch: cycle {k} (collisions {collide}), r_data "
                                    f"expected {exp:#x}, got {got:#x} (target {cfg['target']}, "
                                    f"{cfg['name']})")
                compared += 1
                await Timer(1, unit="ns")
        assert compared == 2 * cfg["cycles"]
        dut._log.info(f"{compared} reads compared, 0 mismatches")


@pytest.mark.sim
# the inferred form does not depend on the DP16KD mode: one build of it
@pytest.mark.parametrize("name,target", [("x18_init", None), ("x18_init", "ecp5"), ("x9", "ecp5"),
                                         ("x18_addr_regs", None), ("x18_addr_regs", "ecp5"),
                                         ("x18_addr_regs2", None), ("x18_addr_regs2", "ecp5"),
                                         ("x18_write_regs", "ecp5")])
def test_registered_ram_verilator(name, target, request):
    from equispike.sim import build_dir_for, run_cocotb
    from equispike.sim.build import MODELS_DIR, ecp5_carry_build_args

    cfg = make_cfg(name, target)
    ecp5 = target == "ecp5"
    # (addr_regs on ECP5: TRELLIS_FF address copies, Yosys' model in ecp5_cells.v)
    models = [MODELS_DIR / "DP16KD.v", MODELS_DIR / "ecp5_cells.v"] if ecp5 else []
    run_cocotb(make_dut(cfg), test_module=MODULE, build_dir=build_dir_for(request.node.nodeid),
               config=cfg, extra_sources=models,
               extra_build_args=ecp5_carry_build_args() if ecp5 else ())


@pytest.mark.sim
@pytest.mark.parametrize("name", ["x18_init", "x18_addr_regs", "x18_addr_regs2", "x18_write_regs"])
@pytest.mark.parametrize("target", [None, "generic"])
def test_registered_ram_amaranth(target, name):
    """The inferred forms in the Amaranth simulator; ``generic`` has no collision poisoning, so it
    is checked without collisions."""
    cfg = make_cfg(name, target)
    dut = make_dut(cfg)
    collide = 0.2 if target is None else 0.0
    lag = cfg.get("addr_regs", 0) - cfg.get("read_addr_regs", cfg.get("addr_regs", 0))
    ops = list(stimulus(7, cfg["width"], cfg["depth"], 1500, collide, lag))
    ref = ReferenceRAM(cfg["width"], cfg["depth"], cfg["init_words"], cfg.get("addr_regs", 0),
                       cfg.get("read_addr_regs"))
    seen = {"collisions": 0}

    async def tb(ctx):
        for k, (w_en, w_addr, w_data, r_en, r_oen, r_addr) in enumerate(ops):
            for sig, v in ((dut.w_en, w_en), (dut.w_addr, w_addr), (dut.w_data, w_data),
                           (dut.r_en, r_en), (dut.r_oen, r_oen), (dut.r_addr, r_addr)):
                ctx.set(sig, int(v))
            await ctx.tick()
            exp = ref.edge(w_en, w_addr, w_data, r_en, r_oen, r_addr)
            seen["collisions"] += ref.collided
            got = ctx.get(dut.r_data)
            assert got == exp, f"first mismatch: cycle {k}, expected {exp:#x}, got {got:#x}"

    run_testbenches(dut, tb)
    assert (seen["collisions"] > 0) == (collide > 0)


def test_registered_ram_dp16kd_structure():
    """Column count and mode per depth; bad parameters are refused with the reason."""
    from amaranth.back import rtlil

    ram = RegisteredRAM(unsigned(40), 100, target="ecp5")
    assert ram.mode == (18, 1024, 4) and ram.columns == 3
    text = rtlil.convert(ram)
    assert text.count("cell \\DP16KD") == 3
    assert RegisteredRAM(unsigned(20), 1500, target="ecp5").mode[0] == 9
    # the dummy word of addr_regs needs an address bit more than a depth-2 port has
    for regs in (1, 2):
        tiny = RegisteredRAM(unsigned(8), 2, target="ecp5", addr_regs=regs)
        assert tiny.words == 3 and rtlil.convert(tiny).count("cell \\TRELLIS_FF") == 4 * regs
    with pytest.raises(ValueError, match="18-bit mode"):
        RegisteredRAM(unsigned(8), 2000, init=[1], target="ecp5")
    with pytest.raises(ValueError, match="exceeds one DP16KD"):
        RegisteredRAM(unsigned(8), 20000, target="ecp5")
    with pytest.raises(ValueError, match="target"):
        RegisteredRAM(unsigned(8), 16, target="xilinx")
    with pytest.raises(ValueError, match="unsigned 4-bit"):
        RegisteredRAM(unsigned(4), 16, init=[16])
    with pytest.raises(ValueError, match="depth"):
        RegisteredRAM(unsigned(4), 1)
    with pytest.raises(ValueError, match="read_addr_regs"):
        RegisteredRAM(unsigned(4), 16, addr_regs=1, read_addr_regs=2)
