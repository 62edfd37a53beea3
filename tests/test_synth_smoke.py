"""Smoke synthesis inside `make test`: one small block through Yosys and nextpnr, figures parsed.

The full sweep (`make synth`) is not part of CI; this only catches breakage of the flow.
"""

from __future__ import annotations

import json

import pytest

from equispike.rtl.synth import (
    TARGETS,
    _fmax_cell,
    _markdown,
    _merge_results,
    late_endpoints,
    synthesize,
)


def test_small_neuron_array_places_and_routes_on_ecp5(tmp_path):
    params = {"lanes": 2, "neurons": 4, "current_width": 8, "membrane_width": 10}
    res = synthesize("neuron", "ecp5-25", params, log=lambda s: None, out_root=tmp_path, more_seeds=[2])
    assert res["LUT4"] > 0 and res["FF"] > 0
    args = res["nextpnr_args"]
    assert args[:5] == ["--25k", "--package", "CABGA256", "--speed", "6"], args
    # the same netlist placed again with seed 2: its own report and figures
    assert set(res["Fmax_by_seed"]) == {"1", "2"} and res["Fmax_by_seed"]["1"] == res["Fmax_MHz"]
    assert res["Fmax_by_seed"]["2"] > 0 and set(res["late_by_seed"]) == {"1", "2"}
    out = tmp_path / "ecp5-25" / "neuron_current_width8_lanes2_membrane_width10_neurons4"
    assert json.loads((out / "report_seed2.json").read_text())["fmax"]
    assert _fmax_cell(res) == f"{res['Fmax_MHz']} ({res['Fmax_by_seed']['2']} (seed 2))"
    assert res["Fmax_MHz"] is not None and res["Fmax_MHz"] > 0
    # each ST-BIF lane has three fused_add chains (H, D, S): their tied carry-ins and loadless
    # carry-outs were opened for nextpnr (no feed-in/pass-out CCU2Cs)
    assert res["carry_ports_opened"]["CIN"] >= 3 * params["lanes"], res["carry_ports_opened"]
    assert res["carry_ports_opened"]["COUT"] >= 3 * params["lanes"], res["carry_ports_opened"]
    written = json.loads(
        (
            tmp_path / "ecp5-25" / "neuron_current_width8_lanes2_membrane_width10_neurons4" / "result.json"
        ).read_text()
    )
    assert written == res
    # every endpoint later than the period is counted (none when the target is met)
    late = res["late_endpoints"]
    assert (late["count"] == 0) == res["target_met"], late


def test_late_endpoints_groups_and_ranks():
    """Endpoints later than the period, grouped by cell name with numbers folded and by port,
    ranked by their latest arrival; earlier ones and the period itself are not late."""

    def net(cell, port, ns):
        return {"endpoints": [{"cell": cell, "port": port, "delay": [ns - 0.1, ns]}]}

    rep = {
        "detailed_net_timings": [
            net("h3[12]_TRELLIS_FF_Q", "DI", 5.5),
            net("h40[2]_TRELLIS_FF_Q", "DI", 5.2),
            net("\\$signal$7_TRELLIS_FF_Q", "CE", 6.0),
            net("h1[0]_TRELLIS_FF_Q", "DI", 5.0),
            net("h1[0]_TRELLIS_FF_Q", "M", 5.1),
            net("q_ok_TRELLIS_FF_Q", "DI", 4.9),
        ]
    }
    assert late_endpoints(rep, 5.0) == {
        "count": 4,
        "classes": [
            ["$signal$#_TRELLIS_FF_Q:CE", 1, 6.0],
            ["h#[#]_TRELLIS_FF_Q:DI", 2, 5.5],
            ["h#[#]_TRELLIS_FF_Q:M", 1, 5.1],
        ],
    }
    assert late_endpoints(rep, 5.0, top=1)["classes"] == [["$signal$#_TRELLIS_FF_Q:CE", 1, 6.0]]
    assert late_endpoints({}, 5.0) == {"count": 0, "classes": []}


def test_small_engine_places_and_routes_on_up5k(tmp_path):
    # the iCE40 flow (scan-chain harness) on a block with memories of every kind it maps: this
    # is where an ECP5-only memory attribute (LUT RAM) once left Yosys without a mapping
    params = {"lanes": 2, "n_in": 4, "n_out": 6, "n_vectors": 2}
    res = synthesize("engine", "up5k", params, log=lambda s: None, out_root=tmp_path)
    assert res["LUT4"] > 0 and res["BRAM"] > 0 and res["harness_bits"] > 0, res
    assert res["Fmax_MHz"] is not None and res["Fmax_MHz"] > 0, res


def test_speed_grade_places_into_its_own_directory_and_row(tmp_path):
    """``speed=8``: nextpnr runs with the -8 timing model, into a build directory of its own, and
    the report keeps the row apart from the default grade's (same block, target, parameters)."""
    params = {"lanes": 1, "neurons": 2, "current_width": 6, "membrane_width": 8}
    fast = synthesize("neuron", "ecp5-25", params, log=lambda s: None, out_root=tmp_path, speed=8)
    assert fast["speed"] == 8 and "speed grade 8" in fast["device"], fast
    args = fast["nextpnr_args"]
    assert args[args.index("--speed") + 1] == "8" and args.count("--speed") == 1, args
    out = tmp_path / "ecp5-25" / "neuron_current_width6_lanes1_membrane_width8_neurons2_speed8"
    assert json.loads((out / "result.json").read_text()) == fast
    # the default grade's row of the same parameters stays a row of its own
    slow = {**fast, "speed": 6, "Fmax_MHz": 1.0}
    merged = _merge_results(tmp_path / "none.json", [slow, fast])
    assert [r["speed"] for r in merged] == [6, 8]
    # a row written before speed grades were recorded is the target's default grade: replaced
    old = {k: v for k, v in slow.items() if k != "speed"}
    (tmp_path / "old.json").write_text(json.dumps({"results": [old, fast]}))
    assert _merge_results(tmp_path / "old.json", [slow]) == [slow, fast]
    table = _markdown(merged, {}, "cmd")
    assert "| ecp5-25 -6 |" in table and "| ecp5-25 -8 |" in table, table


def test_speed_grade_requests_are_checked():
    assert TARGETS["ecp5-85"].speed == 6
    t8 = TARGETS["ecp5-85"].with_speed(8)
    assert t8.device_args == ("--85k", "--package", "CABGA381", "--speed", "8")
    assert TARGETS["ecp5-85"].with_speed(None) is TARGETS["ecp5-85"]
    with pytest.raises(ValueError, match="speed grade must be one of"):
        TARGETS["ecp5-85"].with_speed(5)
    with pytest.raises(ValueError, match="ECP5 targets only"):
        TARGETS["up5k"].with_speed(8)
    from equispike.rtl.synth import main

    with pytest.raises(ValueError, match="no ECP5 target"):
        main(["--target", "up5k", "--speed", "8", "--block", "neuron"])


def test_bad_requests_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown block"):
        synthesize("nonesuch", "ecp5-25", out_root=tmp_path)
    with pytest.raises(ValueError, match="unknown target"):
        synthesize("neuron", "virtex", out_root=tmp_path)
    assert set(TARGETS) == {"ecp5-85", "ecp5-25", "up5k"}


def test_serial_harness_scans_struct_ports_in_and_out():
    """The iCE40 scan-chain harness: every input bit loads through ``sin``, outputs come out on ``sout``."""
    from amaranth.hdl import Module, signed
    from amaranth.lib import data, wiring
    from amaranth.lib.wiring import In, Out
    from amaranth.sim import Simulator

    from equispike.rtl.synth import SerialHarness

    class Adder(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(data.StructLayout({"a": 4, "b": signed(3)})), "y": Out(signed(6))})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(self.x.a + self.x.b)
            return m

    class WithArray(wiring.Component):  # an array port counts its bits, not its elements
        def __init__(self):
            super().__init__({"v": In(data.ArrayLayout(3, 4)), "w": Out(data.ArrayLayout(2, 3))})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += [self.w[i].eq(self.v[i]) for i in range(3)]
            return m

    assert (SerialHarness(WithArray()).in_bits, SerialHarness(WithArray()).out_bits) == (12, 6)

    top = SerialHarness(Adder())
    assert (top.in_bits, top.out_bits) == (7, 6)
    seen = []

    async def bench(ctx):
        for a, b in ((9, -3), (15, 3), (0, -4)):
            word = a | ((b & 7) << 4)
            ctx.set(top.shift, 1)
            for i in reversed(range(7)):  # the chain shifts towards the MSB: send MSB first
                ctx.set(top.sin, (word >> i) & 1)
                await ctx.tick()
            ctx.set(top.shift, 0)
            ctx.set(top.capture, 1)
            await ctx.tick()
            ctx.set(top.capture, 0)
            bits = []
            for _ in range(6):
                bits.append(ctx.get(top.sout))
                ctx.set(top.shift, 1)
                await ctx.tick()
            ctx.set(top.shift, 0)
            got = sum(bit << i for i, bit in enumerate(bits))
            seen.append((a + b, got - 64 if got & 32 else got))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert all(want == got for want, got in seen), seen


def test_core_block_is_registered_and_fitted():
    """The ``core`` block: the digits model's memories as deep as its program's rows (``D`` per
    bank), ``narrow=1`` cuts the logic to the model, bad parameters are named. (Placing and routing
    even the smallest core takes minutes, beyond this smoke test: ``equispike synth --block core
    --params lanes=8,random=1,narrow=1`` does it.)"""
    from equispike.compiler.program import fit_params
    from equispike.model.factory import random_vit
    from equispike.rtl.core import Core
    from equispike.rtl.core.synth import RANDOM_DIMS, core_program
    from equispike.rtl.synth import BLOCKS, _load_optional_blocks, _params_slug

    _load_optional_blocks()
    assert {"core", "rowlayernorm", "rowsoftmax"} <= set(BLOCKS)
    factory, defaults, sweep = BLOCKS["core"]
    assert defaults == {"lanes": 64} and {"lanes": 8, "random": 1, "narrow": 1} in sweep
    prog = core_program({"lanes": 64, "family": "ecp5"})
    p = prog.params
    # every memory exactly as deep as the program's layout needs (its regions and images)
    ends: dict[str, int] = {}
    for r in prog.regions.values():
        ends[r.mem] = max(ends.get(r.mem, 0), r.base + r.rows)
    need = {m: max(ends.get(m, 0), prog.images[m].shape[0] if m in prog.images else 0) for m in "DVSQWI"}
    assert (p.d_depth, p.n_depth, p.s_depth, p.q_depth, p.w_depth, p.i_depth) == tuple(
        need[m] for m in "DVSQWI"
    ), (p, need)
    assert prog.images["T"].shape[0] == p.n_depth
    assert p.d_split == prog.d_bank_rows[0] > 0 and p.prog_depth == len(prog.instrs)
    assert prog.d_bank_rows == (p.d_split, p.d_depth - p.d_split) and len(prog.instrs) == p.prog_depth
    tiny_prog = core_program({"lanes": 8, "random": 1, "narrow": 1})
    tiny = tiny_prog.params
    # dw is the model's, below the counters' width: the counts take several lanes each
    assert tiny.dw == tiny_prog.widths["D (dw)"][0] < tiny.count_width, tiny
    assert tiny.max_dim == 8 and tiny.vw < p.vw and tiny.counters == len(tiny_prog.counters), tiny
    assert core_program({"lanes": 8, "random": 1, "d_depth": 4096}).params.d_depth == 4096
    assert isinstance(factory({"lanes": 8, "random": 1, "narrow": 1, "family": "ecp5"}), Core)
    with pytest.raises(ValueError, match="not both"):
        core_program({"random": 1, "artifact": "x.esa"})
    with pytest.raises(ValueError, match="'depth' is not a CoreParams field"):
        core_program({"lanes": 8, "random": 1, "depth": 3})
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        core_program({"lanes": 12, "random": 1})
    with pytest.raises(TypeError, match="random must be an int"):
        core_program({"random": "a"})
    with pytest.raises(ValueError, match="narrow must be 0 or 1"):
        core_program({"random": 1, "narrow": 2})
    with pytest.raises(TypeError, match="d_depth must be an int"):
        fit_params(random_vit(1, **RANDOM_DIMS), 8, d_depth="1")
    # a path parameter does not nest build directories
    assert _params_slug({"artifact": "a/b c.esa", "lanes": 8}) == "artifacta-b-c.esa_lanes8"


def test_yosys_cells_reads_the_last_stat():
    from equispike.rtl.synth import yosys_cells

    log = (
        "Printing statistics.\n  5 LUT4\n"
        "Printing statistics.\n\n  100 wires\n   12 cells\n"
        "    2   $scopeinfo\n   7   LUT4\n   3   DP16KD\n   4 TRELLIS_FF\n"
    )
    assert yosys_cells(log) == {"LUT4": 7, "DP16KD": 3, "TRELLIS_FF": 4}
    with pytest.raises(TypeError, match="log_text"):
        yosys_cells(None)


def test_tiny_core_synthesizes(tmp_path):
    """The smallest whole core (8 lanes, a one-block random model, ``narrow=1``) through Yosys:
    its memories map onto block RAM and LUT RAM, its multipliers onto DSPs. (Placing and routing
    it takes over 3 minutes here: ``equispike synth --block core --params
    lanes=8,random=1,narrow=1`` does it.)"""
    res = synthesize(
        "core",
        "ecp5-85",
        {"lanes": 8, "random": 1, "narrow": 1},
        log=lambda s: None,
        out_root=tmp_path,
        place=False,
    )
    cells = res["yosys_cells"]
    assert cells["DP16KD"] > 0 and cells["MULT18X18D"] > 0 and cells["LUT4"] > 0, cells
    assert cells["TRELLIS_FF"] > 0 and "Fmax_MHz" not in res
