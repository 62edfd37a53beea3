"""Open-toolchain synthesis: Yosys + nextpnr (PyPI YoWASP builds) on ECP5 and iCE40, real figures.

Each block is generated to Verilog (``emit_src=False``), synthesized by Yosys and placed and routed
by nextpnr; resources and Fmax are parsed from nextpnr's JSON report.

* **ECP5** (``ecp5-85``, ``ecp5-25``): out of context (``--out-of-context``: no IO buffers, the
  block's ports stay internal nets), so the figures are those of the block itself.
* **iCE40 UP5K** (``up5k``): a 64-lane block has far more ports than the SG48 package has pins, so
  the block is wrapped in :class:`SerialHarness`: every input port bit is loaded from a scan chain
  (pin ``sin``, enabled by ``shift``) and every output port bit is captured into a second chain
  (``capture``) shifted out on ``sout``. All logic stays observable (nothing is optimized away) and
  every block port is registered, so the reported Fmax is the block's register-to-register speed.
  The five pins are placed automatically (``--pcf-allow-unconstrained``). The harness costs one
  flip-flop (and a LUT for the mux) per port bit; the report gives the harness's cost separately.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from ._ecp5_netlist import trim_carry_ports

__all__ = [
    "ECP5_SPEED_GRADES",
    "TARGETS",
    "BLOCKS",
    "SerialHarness",
    "synthesize",
    "yosys_cells",
    "register",
    "main",
]


def build_root() -> Path:
    """Where builds and the compiled-tool cache go: ``$EQUISPIKE_BUILD`` or ``./build``."""
    return Path(os.environ.get("EQUISPIKE_BUILD", Path.cwd() / "build")).resolve()


@dataclass(frozen=True)
class Target:
    name: str
    family: str  # "ecp5" | "ice40"
    device_args: tuple[str, ...]
    freq_mhz: float  # the issue's target
    description: str
    speed: int | None = None  # ECP5 speed grade of device_args (6 slowest, 8 fastest)

    def with_speed(self, speed: int | None) -> Target:
        """The same part in another speed grade (``None``: this one). ECP5 only: nextpnr's iCE40
        database has one timing model per part."""
        if speed is None or speed == self.speed:
            return self
        if self.family != "ecp5":
            raise ValueError(f"a speed grade applies to ECP5 targets only, not {self.name!r}")
        if speed not in ECP5_SPEED_GRADES:
            raise ValueError(f"ECP5 speed grade must be one of {ECP5_SPEED_GRADES}, got {speed!r}")
        args = list(self.device_args)
        args[args.index("--speed") + 1] = str(speed)
        desc = self.description.replace(f"speed grade {self.speed}", f"speed grade {speed}")
        return Target(self.name, self.family, tuple(args), self.freq_mhz, desc, speed)


#: nextpnr's ECP5 timing models: -6 (the slowest, e.g. the ULX3S's LFE5U-85F-6), -7 and -8 (the
#: fastest; the same parts ordered in a faster grade)
ECP5_SPEED_GRADES = (6, 7, 8)


TARGETS = {
    "ecp5-85": Target(
        "ecp5-85",
        "ecp5",
        ("--85k", "--package", "CABGA381", "--speed", "6"),
        200.0,
        "Lattice LFE5U-85F, CABGA381, speed grade 6, out of context",
        6,
    ),
    "ecp5-25": Target(
        "ecp5-25",
        "ecp5",
        ("--25k", "--package", "CABGA256", "--speed", "6"),
        200.0,
        "Lattice LFE5U-25F, CABGA256, speed grade 6, out of context",
        6,
    ),
    "up5k": Target(
        "up5k",
        "ice40",
        ("--up5k", "--package", "sg48"),
        60.0,
        "Lattice iCE40UP5K, SG48, serial scan-chain harness",
    ),
}

# ---------------------------------------------------------------------------------------------- blocks
BlockFactory = Callable[[dict], wiring.Component]


def _neuron(p: dict) -> wiring.Component:
    from .neuron import NeuronArray

    lanes = int(p.get("lanes", 64))
    return NeuronArray(
        lanes=lanes,
        n_neurons=int(p.get("neurons", lanes * 17)),
        mode=p.get("mode", "stbif"),
        current_width=int(p.get("current_width", 16)),
        membrane_width=int(p.get("membrane_width", 18)),
        levels=int(p.get("levels", 16)),
        param_depth=int(p.get("param_depth", 1)),
        state_group_lanes=int(p.get("group_lanes", 8)),
        # (default: the D/H/k state form exactly on ECP5, see NeuronArray.state_select)
        state_select=None if "state_select" not in p else bool(int(p["state_select"])),
        # DP16KD with output registers on ECP5 (RegisteredRAM), inferred RAM elsewhere
        ram_target="ecp5" if p.get("family") == "ecp5" else "generic",
        carry_target="ecp5" if p.get("family") == "ecp5" else "generic",
    )


BLOCKS: dict[str, tuple[BlockFactory, dict, list[dict]]] = {
    # name: (factory, default params, sweep)
    "neuron": (_neuron, {"lanes": 64}, [{"lanes": 16}, {"lanes": 32}, {"lanes": 64}]),
}


# Blocks whose ECP5 synthesis leaves out synth_ecp5's closing ``autoname`` (readable net names from
# the cells' names): on the 64-lane core it runs out of the 4 GiB that Yosys has in WebAssembly.
# Their netlists keep Yosys' generated names (``$abc$…``), so their late endpoints group less.
NO_AUTONAME_BLOCKS = {"core"}


# Fmax targets that differ from the part's default (the norm units and the whole core: >= 150 MHz
# on ECP5-85)
BLOCK_TARGET_MHZ: dict[tuple[str, str], float] = {
    ("softmax", "ecp5"): 150.0,
    ("layernorm", "ecp5"): 150.0,
    ("core", "ecp5"): 150.0,
}


def register_block(name: str, factory: BlockFactory, defaults: dict, sweep: list[dict]) -> None:
    BLOCKS[name] = (factory, defaults, sweep)


def _load_optional_blocks() -> None:
    """Blocks defined in other modules register themselves through ``SYNTH_BLOCKS``."""
    import importlib

    for mod in ("engine", "softmax_unit", "layernorm_unit", "attention", "rownorm", "core.synth"):
        try:
            m = importlib.import_module(f"equispike.rtl.{mod}")
        except ModuleNotFoundError:
            continue
        for name, entry in getattr(m, "SYNTH_BLOCKS", {}).items():
            BLOCKS.setdefault(name, entry)


# --------------------------------------------------------------------------------------------- harness
class SerialHarness(Elaboratable):
    """Scan-chain wrapper: every port bit of ``dut`` registered and reachable through 4 pins + clock."""

    def __init__(self, dut: wiring.Component):
        self.dut = dut
        self.sin = Signal()
        self.shift = Signal()
        self.capture = Signal()
        self.sout = Signal()
        ins, outs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (ins if member.flow == wiring.In else outs).append(Value.cast(value))
        self._ins, self._outs = ins, outs
        self.in_bits = sum(len(v) for v in ins)
        self.out_bits = sum(len(v) for v in outs)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = self.dut
        if self.in_bits:
            chain = Signal(self.in_bits)
            with m.If(self.shift):
                m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
            m.d.comb += Cat(*self._ins).eq(chain)
        if self.out_bits:
            cap = Signal(self.out_bits)
            with m.If(self.capture):
                m.d.sync += cap.eq(Cat(*self._outs))
            with m.Elif(self.shift):
                m.d.sync += cap.eq(cap >> 1)
            m.d.comb += self.sout.eq(cap[0])
        return m


# ------------------------------------------------------------------------------------------------ flow
def _tool(name: str) -> list[str]:
    exe = shutil.which(
        f"yowasp-{name}", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    if exe is None:
        raise FileNotFoundError(f"yowasp-{name} not found: install equispike with its dependencies")
    return [exe]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("YOWASP_CACHE_DIR", str(build_root() / "yowasp-cache"))
    env["AMARANTH_USE_YOSYS"] = "builtin"
    return env


def tool_versions() -> dict[str, str]:
    out = {}
    for tool in ("yosys", "nextpnr-ecp5", "nextpnr-ice40"):
        r = subprocess.run(
            _tool(tool) + ["--version" if "nextpnr" in tool else "-V"],
            capture_output=True,
            text=True,
            env=_env(),
        )
        line = (r.stdout or r.stderr).strip().splitlines()
        out[tool] = line[-1] if line else "unknown"
    return out


def _verilog(top: Elaboratable, ports: list | None) -> str:
    return verilog.convert(top, name="top", ports=ports, emit_src=False, strip_internal_attrs=True)


def _run(cmd: list[str], log: Path, cwd: Path, detail: Path | None = None) -> None:
    """Run a tool, its output in ``log``; on failure raise with the tail of ``detail`` (or ``log``)."""
    with log.open("w") as f:
        r = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=_env())
    if r.returncode:
        src = detail if detail is not None and detail.exists() else log
        tail = src.read_text().splitlines()[-15:]
        raise RuntimeError(
            f"{Path(cmd[0]).name} failed (exit {r.returncode}), see {log}:\n" + "\n".join(tail)
        )


def yosys_cells(log_text: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` in a Yosys log (``{"LUT4": n, "DP16KD": n, ...}``; the
    ``$``-prefixed bookkeeping cells and the wire and port totals left out): what the netlist
    asks of the part even when it does not fit, where nextpnr reports nothing."""
    if not isinstance(log_text, str):
        raise TypeError(f"log_text must be a str, got {type(log_text).__name__}")
    last = log_text.rsplit("Printing statistics", 1)[-1]
    cells: dict[str, int] = {}
    for n, cell in re.findall(r"^\s*(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", last, re.M):
        cells[cell] = cells.get(cell, 0) + int(n)
    return cells


def _params_slug(params: dict) -> str:
    # a value may be a path (the core's ``artifact``): its separators would nest build directories
    slug = "_".join(f"{k}{v}" for k, v in sorted(params.items())) or "default"
    return re.sub(r"[^\w.=-]+", "-", slug)


def synthesize(
    block: str,
    target: str,
    params: dict | None = None,
    seed: int = 1,
    log: Callable[[str], None] = print,
    out_root: Path | None = None,
    more_seeds: Sequence[int] = (),
    speed: int | None = None,
    place: bool = True,
) -> dict:
    """Synthesize and place-and-route one block; returns its figures (also written to its build dir).

    ``place=False`` stops after Yosys: the result has the netlist's ``yosys_cells`` and
    ``yosys_s`` only (a block too large to place and route within a test's time).

    ``more_seeds``: place and route the same netlist again with these nextpnr seeds (Yosys'
    abc9 mapping is not repeatable run to run, so only this compares seeds on one netlist);
    their Fmax and late-endpoint counts go into ``Fmax_by_seed`` / ``late_by_seed`` (the
    resources and ``Fmax_MHz`` are the first seed's). ``speed``: the ECP5 speed grade (default:
    the target's, 6); another grade places and routes into its own build directory
    (``<block>_<params>_speed<N>``) and its results are kept apart from the default grade's."""
    _load_optional_blocks()
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; blocks are {sorted(BLOCKS)}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; targets are {sorted(TARGETS)}")
    factory, defaults, _ = BLOCKS[block]
    params = {**defaults, **(params or {})}
    tgt = TARGETS[target].with_speed(speed)
    goal_mhz = BLOCK_TARGET_MHZ.get((block, tgt.family), tgt.freq_mhz)
    grade = "" if tgt.speed == TARGETS[target].speed else f"_speed{tgt.speed}"
    out = (out_root or build_root() / "synth") / target / f"{block}_{_params_slug(params)}{grade}"
    out.mkdir(parents=True, exist_ok=True)
    # the factory also learns the FPGA family (vendor primitives); it is not a block parameter
    dut = factory({**params, "family": tgt.family})
    if tgt.family == "ice40":
        top = SerialHarness(dut)
        ports = [top.sin, top.shift, top.capture, top.sout]
        harness_bits = top.in_bits + top.out_bits
    else:
        top, ports, harness_bits = dut, None, 0
    (out / "top.v").write_text(_verilog(top, ports))
    synth_cmd = "synth_ecp5" if tgt.family == "ecp5" else "synth_ice40 -dsp"
    t0 = time.monotonic()
    log(f"[synth] {block} {params} on {target}: yosys ...")
    # ``splitnets`` before mapping: without it the abc9 reintegration of Amaranth netlists (escaped
    # ``\$N`` wire names, multi-bit nets) trips Yosys asserts or leaves multiply-driven nets
    # (YosysHQ/yosys#4349, proposed fix: split nets in FPGA scripts). ``check -assert`` guards it.
    mapping = f"{synth_cmd} -top top -json synth.json"
    if block in NO_AUTONAME_BLOCKS and tgt.family == "ecp5":
        # synth_ecp5's script up to its final ``check`` label, then that label without autoname
        mapping = (
            f"{synth_cmd} -top top -run :check; hierarchy -check; stat; check -noinit; "
            "blackbox =A:whitebox; write_json synth.json"
        )
    script = (
        f"read_verilog -sv top.v; hierarchy -top top; proc; flatten; splitnets; "
        f"{mapping}; check -assert; stat"
    )
    # yowasp's in-process ABC swallows stdout, so the complete log is Yosys' own (-l)
    _run(
        _tool("yosys") + ["-q", "-l", "yosys.log", "-p", script],
        out / "yosys.stdout",
        out,
        detail=out / "yosys.log",
    )
    if not place:
        result = {
            "block": block,
            "params": params,
            "target": target,
            "device": tgt.description,
            "yosys_s": round(time.monotonic() - t0, 1),
            "yosys_cells": yosys_cells((out / "yosys.log").read_text()),
        }
        (out / "result.json").write_text(json.dumps(result, indent=1))
        return result
    mapper = "abc9"
    trimmed = None
    if tgt.family == "ecp5":
        # open carry ports nextpnr would otherwise pad with extra CCU2Cs (rtl/_ecp5_netlist.py)
        trimmed = trim_carry_ports(out / "synth.json")
    t1 = time.monotonic()
    log(f"[synth] {block} on {target}: nextpnr ({t1 - t0:.0f} s in yosys) ...")

    def pnr_cmd(pnr_seed: int, report: str) -> list[str]:
        cmd = (
            _tool(f"nextpnr-{tgt.family}")
            + list(tgt.device_args)
            + [
                "--json",
                "synth.json",
                "--report",
                report,
                "--detailed-timing-report",
                "--freq",
                str(goal_mhz),
                "--seed",
                str(pnr_seed),
                "--timing-allow-fail",
                "-q",
            ]
        )
        return cmd + (["--out-of-context"] if tgt.family == "ecp5" else ["--pcf-allow-unconstrained"])

    pnr = pnr_cmd(seed, "report.json")
    try:
        _run(pnr, out / "nextpnr.log", out)
    except RuntimeError as e:
        # a block larger than the part is a result (the sweep goes on), other failures are not
        text = (out / "nextpnr.log").read_text()
        over = re.search(
            r"(?:utili[sz]ation|too many|Unable to place|does not fit)[^\n]*", text, re.IGNORECASE
        )
        if over is None:
            raise
        log(f"[synth] {block} {params} on {target}: does not fit ({over.group(0).strip()})")
        result = {
            "block": block,
            "params": params,
            "target": target,
            "device": tgt.description,
            "speed": tgt.speed,
            "seed": seed,
            "LUT4": None,
            "FF": None,
            "BRAM": None,
            "DSP": None,
            "Fmax_MHz": None,
            "target_MHz": goal_mhz,
            "target_met": False,
            "LUT4_per_lane": None,
            "harness_bits": harness_bits,
            "error": f"does not fit: {over.group(0).strip()}"[:200],
            "yosys_cells": yosys_cells((out / "yosys.log").read_text()),
        }
        (out / "result.json").write_text(json.dumps(result, indent=1))
        del e
        return result
    t2 = time.monotonic()
    rep = json.loads((out / "report.json").read_text())
    util = {k: v["used"] for k, v in rep.get("utilization", {}).items()}
    fmax = min((v["achieved"] for v in rep.get("fmax", {}).values()), default=None)
    if tgt.family == "ecp5":
        res = {
            "LUT4": util.get("TRELLIS_COMB", 0),
            "FF": util.get("TRELLIS_FF", 0),
            "BRAM": util.get("DP16KD", 0),
            "DSP": util.get("MULT18X18D", 0),
        }
    else:
        res = {
            "LUT4": util.get("ICESTORM_LC", 0),
            "FF": None,
            "BRAM": util.get("ICESTORM_RAM", 0),
            "DSP": util.get("ICESTORM_DSP", 0),
            "SPRAM": util.get("ICESTORM_SPRAM", 0),
        }
        # nextpnr's iCE40 report has no flip-flop count: take it from the final Yosys ``stat``
        last_stat = (out / "yosys.log").read_text().rsplit("Printing statistics", 1)[-1]
        ff = re.findall(r"^\s*(\d+)\s+SB_DFF\w*\s*$", last_stat, re.M)
        res["FF"] = sum(int(x) for x in ff) if ff else None
    lanes = params.get("lanes")
    result = {
        "block": block,
        "params": params,
        "target": target,
        "device": tgt.description,
        "speed": tgt.speed,
        "seed": seed,
        **res,
        "Fmax_MHz": round(fmax, 1) if fmax is not None else None,
        "target_MHz": goal_mhz,
        "target_met": fmax is not None and fmax >= goal_mhz,
        "LUT4_per_lane": round(res["LUT4"] / lanes, 1) if lanes else None,
        "harness_bits": harness_bits,
        "mapper": mapper,
        "carry_ports_opened": trimmed,
        "yosys_s": round(t1 - t0, 1),
        "nextpnr_s": round(t2 - t1, 1),
        # the place-and-route command line without the tool's path (reproduce a row with it)
        "nextpnr_args": pnr[1:],
        "late_endpoints": late_endpoints(rep, 1000.0 / goal_mhz),
        "yosys_cells": yosys_cells((out / "yosys.log").read_text()),
    }
    if more_seeds:
        by_seed = {str(seed): result["Fmax_MHz"]}
        late_by_seed = {str(seed): result["late_endpoints"]["count"]}
        for s in more_seeds:
            log(f"[synth] {block} on {target}: nextpnr seed {s} (same netlist) ...")
            _run(pnr_cmd(s, f"report_seed{s}.json"), out / f"nextpnr_seed{s}.log", out)
            rep_s = json.loads((out / f"report_seed{s}.json").read_text())
            f = min((v["achieved"] for v in rep_s.get("fmax", {}).values()), default=None)
            by_seed[str(s)] = round(f, 1) if f is not None else None
            late_by_seed[str(s)] = late_endpoints(rep_s, 1000.0 / goal_mhz)["count"]
        result["Fmax_by_seed"], result["late_by_seed"] = by_seed, late_by_seed
    (out / "result.json").write_text(json.dumps(result, indent=1))
    log(
        f"[synth] {block} on {target}: {res['LUT4']} LUT4, {res['FF']} FF, {res['BRAM']} BRAM, "
        f"{res['DSP']} DSP, Fmax {result['Fmax_MHz']} MHz (target {goal_mhz})"
    )
    return result


def late_endpoints(report: dict, period_ns: float, top: int = 8) -> dict:
    """The flip-flop and block-RAM inputs that miss ``period_ns`` in nextpnr's detailed net
    timings (``--detailed-timing-report``: each endpoint's arrival time), grouped into classes
    by cell name with its numbers folded (``h#[#]_TRELLIS_FF_Q``: a bus, or one register per
    lane, is one class) and input port: ``{"count": N, "classes": [[class, endpoints,
    worst arrival ns], ...]}``, the ``top`` latest classes. Where the critical path names one
    path, this names every late one: which structures to fix, not which one placement hit."""
    classes: dict[str, list] = {}
    count = 0
    for net in report.get("detailed_net_timings", []):
        for ep in net.get("endpoints", []):
            arrival = max(ep["delay"])
            if arrival <= period_ns:
                continue
            count += 1
            key = re.sub(r"\d+", "#", ep["cell"]).lstrip("\\") + ":" + ep["port"]
            c = classes.setdefault(key, [key, 0, 0.0])
            c[1] += 1
            c[2] = max(c[2], round(arrival, 2))
    ranked = sorted(classes.values(), key=lambda c: (-c[2], -c[1], c[0]))
    return {"count": count, "classes": ranked[:top]}


def _fmax_cell(r: dict) -> str:
    """Fmax of the first seed, and of the other seeds of the same netlist in parentheses."""
    others = [f"{v} (seed {k})" for k, v in r.get("Fmax_by_seed", {}).items() if k != str(r.get("seed"))]
    return f"{r['Fmax_MHz']}" + (f" ({', '.join(others)})" if others else "")


def _target_cell(r: dict) -> str:
    """The target, with the speed grade where the part has one (``ecp5-85 -6``)."""
    return f"{r['target']} -{r['speed']}" if r.get("speed") else r["target"]


def _markdown(results: list[dict], versions: dict, cmdline: str) -> str:
    lines = [
        "# Post-place-and-route results",
        "",
        f"Latest command: `{cmdline}` (the table accumulates runs; `make synth` runs every sweep)  ",
        "Tools: " + "; ".join(f"{k}: {v}" for k, v in versions.items()),
        "",
        "| block | parameters | target | LUT4 | LUT4/lane | FF | BRAM | DSP | Fmax (MHz) "
        "| target (MHz) | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        tname = _target_cell(r)
        if r.get("error"):
            lines.append(
                f"| {r['block']} | {p} | {tname} | {r['error']} | | | | | | {r['target_MHz']:.0f} | no |"
            )
            continue
        lines.append(
            f"| {r['block']} | {p} | {tname} | {r['LUT4']} | {r['LUT4_per_lane'] or ''} | "
            f"{r['FF']} | {r['BRAM']} | {r['DSP']} | {_fmax_cell(r)} | {r['target_MHz']:.0f} | "
            f"{'yes' if r['target_met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _speed_of(r: dict) -> int:
    """A row's speed grade (rows written before grades were recorded: the target's default)."""
    t = TARGETS.get(r["target"])
    return r.get("speed") or (t.speed if t is not None else None) or 0


def _merge_results(path: Path, results: list[dict]) -> list[dict]:
    def key(r: dict) -> str:
        return json.dumps([r["block"], r["target"], _speed_of(r), r["params"]], sort_keys=True)

    old: list[dict] = []
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            old = []  # an unreadable old report is replaced, not merged
    fresh = {key(r) for r in results}
    merged = [r for r in old if isinstance(r, dict) and "block" in r and key(r) not in fresh] + results
    return sorted(
        merged, key=lambda r: (r["block"], r["target"], _speed_of(r), json.dumps(r["params"], sort_keys=True))
    )


def _parse_params(text: str | None) -> dict:
    params: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--params takes key=value[,key=value], got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = int(v) if v.strip().lstrip("-").isdigit() else v.strip()
    return params


def cmd_synth(args: argparse.Namespace) -> int:
    _load_optional_blocks()
    targets = args.target or (["ecp5-85", "up5k"] if args.sweep else ["ecp5-85"])
    if args.speed is not None and all(TARGETS[t].family != "ecp5" for t in targets):
        raise ValueError(f"--speed is an ECP5 speed grade; no ECP5 target among {targets}")
    blocks = [args.block] if args.block else sorted(BLOCKS)
    runs = []
    for b in blocks:
        if b not in BLOCKS:
            raise ValueError(f"unknown block {b!r}; blocks are {sorted(BLOCKS)}")
        variants = BLOCKS[b][2] if args.sweep else [_parse_params(args.params)]
        runs += [(b, t, v) for t in targets for v in variants]
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    results = []
    for i, (b, t, v) in enumerate(runs):
        log(f"[synth] run {i + 1}/{len(runs)}")
        results.append(
            synthesize(
                b,
                t,
                v,
                seed=args.seed,
                log=log,
                more_seeds=args.more_seeds,
                speed=args.speed if TARGETS[t].family == "ecp5" else None,
            )
        )
    versions = tool_versions()
    cmdline = (
        "equispike " + " ".join(sys.argv[1:])
        if sys.argv and "equispike" in sys.argv[0]
        else "equispike synth"
    )
    report = {"tools": versions, "command": cmdline, "results": results}
    # the report accumulates: a run replaces earlier results of the same block/target/parameters
    path = build_root() / "synth" / "report.json"
    merged = _merge_results(path, results)
    _atomic_write(path, json.dumps({"tools": versions, "results": merged}, indent=1))
    _atomic_write(path.with_suffix(".md"), _markdown(merged, versions, cmdline))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(_markdown(results, versions, cmdline))
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "synth",
        help="Yosys + nextpnr synthesis: real resources and Fmax per block",
        description="Generate each block's Verilog, synthesize with Yosys and place-and-route with nextpnr "
        "(YoWASP builds from PyPI; compiled tools cached in build/yowasp-cache). ECP5 runs are out of "
        "context; iCE40 runs wrap the block in a scan-chain harness so its ports fit the package. "
        "Writes build/synth/report.json and build/synth/report.md.",
    )
    s.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help="target part (repeatable); default ecp5-85 (ecp5-85 and up5k with --sweep)",
    )
    s.add_argument("--block", help="one block (default: every block); an unknown name lists them")
    s.add_argument("--params", help="block parameters key=value[,key=value], e.g. lanes=32")
    s.add_argument("--sweep", action="store_true", help="run each block's lane-count sweep")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    s.add_argument(
        "--speed",
        type=int,
        choices=ECP5_SPEED_GRADES,
        help="ECP5 speed grade (default 6, the slowest); iCE40 targets in the same run have none",
    )
    s.add_argument(
        "--more-seeds",
        type=lambda t: [int(x) for x in t.split(",") if x],
        default=[],
        metavar="S,S,...",
        help="also place and route the same netlist with these seeds (Fmax_by_seed in the result)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_synth)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="equispike-synth")
    register(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["synth", *(argv or [])])
    return args.func(args)
