"""Carry-chain port trimming on a Yosys ECP5 JSON netlist, before nextpnr.

nextpnr's ECP5 packer (``ecp5/pack.cc``, ``split_carry_chain``) puts a whole extra ``CCU2C``
(two LUT4 sites) in front of every chain whose first ``CIN`` is connected to any net (the
constant 0 Yosys ties to an open ``CIN`` included), and one after every chain whose last
``COUT`` is connected to any net (also one without loads). Yosys always connects both ports.
This pass disconnects them where that provably changes nothing:

* a last ``COUT`` whose net has no load (no cell input, no module port);
* a first ``CIN`` tied to a constant when the ``CCU2C``'s first half ignores its carry in: its
  LUT4 is 0 for every value of its non-constant inputs (so ``cout0 = P ? CIN : G`` is ``G``) and
  its sum ``S0`` has no load. :func:`~equispike.rtl._carry.fused_add` builds chains that start
  this way (the carry in enters through half 0), chains of Yosys' own adders do not (they are
  left as they are).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["trim_carry_ports"]

_CONST = ("0", "1", "x", "z")


def _loads(module: dict) -> set:
    """Net bits read by a cell input or a module output."""
    used: set = set()
    for cell in module["cells"].values():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port, "input") != "output":
                used.update(b for b in bits if b not in _CONST)
    for port in module.get("ports", {}).values():
        if port["direction"] != "input":
            used.update(b for b in port["bits"] if b not in _CONST)
    return used


def _int_param(value) -> int:
    """A Yosys JSON parameter (binary string or int)."""
    if isinstance(value, int):
        return value
    return int(str(value).replace("x", "0").replace("z", "0"), 2)


def _first_half_ignores_cin(cell: dict) -> bool:
    """LUT4 of half 0 is 0 for every value of its non-constant inputs (INJECT1_0 = NO)."""
    if str(cell["parameters"].get("INJECT1_0", "YES")).strip() != "NO":
        return False
    init = _int_param(cell["parameters"].get("INIT0", 0))
    pins = [cell["connections"].get(p, ["x"])[0] for p in ("A0", "B0", "C0", "D0")]
    for idx in range(16):
        bits = [(idx >> k) & 1 for k in range(4)]
        if any(p in ("0", "1") and int(p) != v for p, v in zip(pins, bits, strict=True)):
            continue          # not reachable with the constant pins
        if (init >> idx) & 1:
            return False
    return True


def trim_carry_ports(path: Path) -> dict[str, int]:
    """Rewrite the netlist at ``path`` in place (atomically); returns the number of ``COUT`` and
    ``CIN`` ports disconnected."""
    path = Path(path)
    netlist = json.loads(path.read_text())
    counts = {"COUT": 0, "CIN": 0}
    for module in netlist["modules"].values():
        if "cells" not in module:
            continue
        used = _loads(module)
        for cell in module["cells"].values():
            if cell["type"] != "CCU2C":
                continue
            conn = cell["connections"]
            cout = conn.get("COUT", [])
            if cout != ["x"] and all(b in _CONST or b not in used for b in cout):
                conn["COUT"] = ["x"]          # (the port must stay: nextpnr looks it up)
                counts["COUT"] += 1
            cin = conn.get("CIN", [])
            s0 = conn.get("S0", [])
            if cin and cin != ["x"] and all(b in _CONST for b in cin) and _first_half_ignores_cin(cell) \
                    and not any(b in used for b in s0):
                conn["CIN"] = ["x"]
                counts["CIN"] += 1
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(netlist))
    os.replace(tmp, path)
    return counts
