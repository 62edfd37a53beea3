"""trim_carry_ports (rtl/_ecp5_netlist.py): which CCU2C carry ports it opens, and which it must not."""

from __future__ import annotations

import json

from equispike.rtl._carry import fused_init
from equispike.rtl._ecp5_netlist import trim_carry_ports

START = 0x000A        # fused_add's chain start: LUT4 = 0 with B0 = C0 = D0 = 1, generate = A0
ADDER = 0x96AA        # a half whose LUT4 depends on its inputs (Yosys' adder halves are like it)


def ccu(init0: int, cin, cout, s0, a0="1") -> dict:
    return {
        "type": "CCU2C",
        "parameters": {"INIT0": format(init0, "016b"), "INIT1": format(ADDER, "016b"),
                       "INJECT1_0": "NO", "INJECT1_1": "NO"},
        "port_directions": {"A0": "input", "B0": "input", "C0": "input", "D0": "input",
                            "CIN": "input", "COUT": "output", "S0": "output", "S1": "output"},
        "connections": {"A0": [a0], "B0": ["1"], "C0": ["1"], "D0": ["1"],
                        "CIN": cin, "COUT": cout, "S0": s0, "S1": [90]},
    }


def netlist(tmp_path, cells: dict, out_bits=(90,)):
    path = tmp_path / "synth.json"
    path.write_text(json.dumps({"modules": {"top": {
        "ports": {"o": {"direction": "output", "bits": list(out_bits)}},
        "cells": {**cells, "load": {"type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
                                    "connections": {"A": [50], "Z": [51]}, "parameters": {}}},
    }}}))
    return path


def test_fused_chain_start_and_open_end_are_opened(tmp_path):
    path = netlist(tmp_path, {
        "c0": ccu(START, ["0"], [20], [21], a0=7),     # start of a fused_add chain, carry in = net 7
        "c1": ccu(ADDER, [20], [22], [23]),            # its last CCU2C: COUT 22 has no load
    })
    assert trim_carry_ports(path) == {"COUT": 1, "CIN": 1}
    cells = json.loads(path.read_text())["modules"]["top"]["cells"]
    assert cells["c0"]["connections"]["CIN"] == ["x"]
    assert cells["c0"]["connections"]["COUT"] == [20]          # carries into c1: kept
    assert cells["c1"]["connections"]["CIN"] == [20]
    assert cells["c1"]["connections"]["COUT"] == ["x"]
    assert trim_carry_ports(path) == {"COUT": 0, "CIN": 0}       # idempotent


def test_chains_that_need_their_ports_keep_them(tmp_path):
    path = netlist(tmp_path, {
        "adder": ccu(ADDER, ["0"], [30], [31]),   # half 0 adds its carry in: CIN stays tied
        "s0_used": ccu(START, ["0"], [32], [50]),  # S0 read by a LUT: it would see the open CIN
        "cout_used": ccu(START, ["1"], [50], [33]),  # COUT read by a LUT
        "cout_port": ccu(START, ["0"], [90], [34]),  # COUT is a module output
        "cin_net": ccu(START, [35], [36], [37]),   # CIN driven by a net: not a constant
    }, out_bits=(90,))
    counts = trim_carry_ports(path)
    cells = json.loads(path.read_text())["modules"]["top"]["cells"]
    assert cells["adder"]["connections"]["CIN"] == ["0"]
    assert cells["s0_used"]["connections"]["CIN"] == ["0"]
    assert cells["cout_used"]["connections"]["COUT"] == [50]
    assert cells["cout_port"]["connections"]["COUT"] == [90]
    assert cells["cin_net"]["connections"]["CIN"] == [35]
    # opened: the cells' unloaded COUTs (adder 30, s0_used 32, cin_net 36) and the CINs of
    # cout_used and cout_port (chain starts with unloaded S0)
    assert counts == {"COUT": 3, "CIN": 2}


def test_fused_add_halves_never_ignore_their_carry():
    # every select's half depends on a_i (P = a ^ t): such a half is never mistaken for a start
    from equispike.rtl._ecp5_netlist import _first_half_ignores_cin

    for t in (lambda b, c, d: d & (b ^ c ^ 1), lambda b, c, d: (b & d) | ((b ^ 1) & c),
              lambda b, c, d: b & d):
        cell = ccu(fused_init(t), ["0"], [1], [2], a0=5)
        cell["connections"].update(B0=[6], C0=[7], D0=[8])
        assert not _first_half_ignores_cin(cell)
    assert _first_half_ignores_cin(ccu(START, ["0"], [1], [2], a0=5))
