"""Whole-image runs of the core under Verilator, compared with the golden SNN spike for spike.

The core is built once per (program, lanes) with a C++ main (``main.cpp`` beside this file) that
streams the images in and writes every trace beat and output beat to a file; Python then decodes
them and compares each image with ``ViTSNN.run(record=True)`` (:mod:`.compare`). Per-cycle work
stays in C++: a whole image of the digits model is hundreds of thousands of cycles.

The build leaves every value the Verilog does not initialize to run time, as every cocotb build
does (:data:`~equispike.sim.build.X_INIT_BUILD_ARGS`), and each run takes the seed of its power-up
values (``init_seed``: random from that Verilator seed, or ``zero``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...compiler.program import Program
from ...rtl.core.core import CYCLE_CLASSES, STATUS_FIELDS, Core, count_lanes, count_rows, out_rows
from ...rtl.core.units import addr_width
from ..build import (
    INIT_SEEDS_ENV,
    VERILATOR_WARN_ARGS,
    X_INIT_BUILD_ARGS,
    _with_verilator_path,
    init_plusargs,
    init_seeds,
    parse_init_seeds,
    to_verilog,
)

__all__ = ["CoreSim", "CoreRun", "HarnessError"]

MAIN_CPP = Path(__file__).resolve().parent / "main.cpp"


class HarnessError(RuntimeError):
    """The simulation could not run, or a stream broke its contract."""


@dataclass
class CoreRun:
    """Decoded outputs of one image."""

    trace: list[tuple[int, int, np.ndarray]]
    logits: np.ndarray
    counts: np.ndarray
    cycles_by_class: dict[str, int]
    settle_step: int
    steps: int
    cycles: int  # the core's own count: last input beat to first output beat
    wall_cycles: int  # harness view: first input beat to last output beat


@dataclass
class CoreSim:
    """A Verilator build of a core for one program.

    ``build_dir`` holds ``top.v``, the C++ main and the executable; the build is skipped when
    neither changed.
    """

    program: Program
    build_dir: Path
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.build_dir = Path(self.build_dir)
        p = self.program.params
        self.P = p.lanes
        self.in_bits = p.lanes * p.iw
        self.out_bits = p.lanes * p.dw + 1
        self.aw = addr_width(p)
        self.trace_bits = 1 + 16 + self.aw + 2 * p.lanes
        self.beats = out_rows(p, self.program.logits_rows)

    # ---- build ------------------------------------------------------------------------------------
    def build(self) -> Path:
        bd = self.build_dir
        bd.mkdir(parents=True, exist_ok=True)
        text = to_verilog(Core(self.program, trace=True), name="top")
        src = MAIN_CPP.read_text()
        cflags = f"-DIN_BITS={self.in_bits} -DOUT_BITS={self.out_bits} -DTRACE_BITS={self.trace_bits} -O1"
        cmd = [
            "verilator",
            "--cc",
            "--exe",
            "--build",
            "-j",
            "2",
            *VERILATOR_WARN_ARGS,
            "-Wno-fatal",
            *X_INIT_BUILD_ARGS,
            "--output-split",
            "0",
            "-CFLAGS",
            cflags,
            "--top-module",
            "top",
            "top.v",
            "main.cpp",
            "-o",
            "core_sim",
        ]
        key = hashlib.sha256((text + src + " ".join(cmd)).encode()).hexdigest()
        exe = bd / "obj_dir" / "core_sim"
        stamp = bd / "build.sha256"
        if exe.exists() and stamp.exists() and stamp.read_text() == key:
            return exe
        (bd / "top.v").write_text(text)
        shutil.copy(MAIN_CPP, bd / "main.cpp")
        if (bd / "obj_dir").exists():
            shutil.rmtree(bd / "obj_dir")
        proc = subprocess.run(cmd, cwd=bd, capture_output=True, text=True, env=_with_verilator_path())
        if proc.returncode != 0:
            raise HarnessError(
                f"Verilator build failed in {bd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        stamp.write_text(key)
        return exe

    # ---- run --------------------------------------------------------------------------------------
    def run(
        self,
        images_rows: list[np.ndarray],
        *,
        seed: int = 1,
        init_seed: str | int | None = None,
        idle_permille: int = 0,
        stall_permille: int = 0,
        max_cycles: int = 2_000_000_000,
    ) -> list[CoreRun]:
        """Run the images (each its ``I`` rows) back to back; returns one :class:`CoreRun` each.

        ``seed`` drives the stimulus (idle input and stalled output cycles); ``init_seed`` the
        power-up values: a positive integer (random values from that Verilator seed) or ``"zero"``
        (all 0). ``None`` takes the first seed of :func:`~equispike.sim.build.init_seeds`
        (``EQUISPIKE_INIT_SEEDS``; :func:`~.run.run_core` runs every one of them).
        """
        if init_seed is None:
            init_seed = init_seeds()[0]
        seeds = parse_init_seeds(init_seed, source="init_seed")
        if len(seeds) != 1:
            raise ValueError(f"init_seed: one seed, got {init_seed!r} (several: one run each, "
                             f"see {INIT_SEEDS_ENV})")
        exe = self.build()
        p = self.program.params
        rows_per = self.program.input_rows
        lines = []
        for rows in images_rows:
            rows = np.asarray(rows)
            if rows.shape != (rows_per, self.P):
                raise ValueError(f"an image needs {rows_per} rows of {self.P} lanes, got {rows.shape}")
            for r in rows:
                w = 0
                for i, v in enumerate(r):
                    w |= (int(v) & ((1 << p.iw) - 1)) << (i * p.iw)
                lines.append(f"{w:x}")
        fin = self.build_dir / f"in.{os.getpid()}.hex"
        fout = self.build_dir / f"out.{os.getpid()}.txt"
        fin.write_text("\n".join(lines) + "\n")
        cmd = [
            str(exe),
            str(fin),
            str(fout),
            str(rows_per),
            str(self.beats),
            str(seed),
            str(idle_permille),
            str(stall_permille),
            str(max_cycles),
            *init_plusargs(seeds[0]),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        text = fout.read_text() if fout.exists() else ""
        fin.unlink(missing_ok=True)
        fout.unlink(missing_ok=True)
        errors = [ln for ln in text.splitlines() if ln.startswith("E ")]
        if proc.returncode != 0 or errors:
            raise HarnessError(
                f"core simulation failed (exit {proc.returncode}, initial values {seeds[0]}): "
                f"{'; '.join(errors[:5]) or proc.stderr[-2000:]}"
            )
        return self._decode(text, len(images_rows))

    def _decode(self, text: str, n_images: int) -> list[CoreRun]:
        p = self.program.params
        P, aw = self.P, self.aw
        traces: list[list] = [[] for _ in range(n_images)]
        outs: list[list[int]] = [[] for _ in range(n_images)]
        spans: dict[int, tuple[int, int]] = {}
        img = 0
        for ln in text.splitlines():
            kind, *rest = ln.split()
            if kind == "T":
                w = int(rest[1], 16)
                step = (w >> 1) & 0xFFFF
                row = (w >> 17) & ((1 << aw) - 1)
                sp = w >> (17 + aw)
                s = np.array([((sp >> (2 * i)) & 3) for i in range(P)], dtype=np.int64)
                s[s == 3] = -1
                if img < n_images:
                    traces[img].append((step, row, s.astype(np.int8)))
            elif kind == "O":
                if img < n_images:
                    outs[img].append(int(rest[1], 16))
            elif kind == "I":
                spans[int(rest[0])] = (int(rest[1]), int(rest[2]))
                img += 1
        runs = []
        sections = (p.counters, len(CYCLE_CLASSES), len(STATUS_FIELDS))
        lr = self.program.logits_rows
        for b in range(n_images):
            beats = outs[b]
            if len(beats) != self.beats:
                raise HarnessError(f"image {b}: {len(beats)} output beats, expected {self.beats}")
            last = [(w >> (P * p.dw)) & 1 for w in beats]
            if last != [0] * (self.beats - 1) + [1]:
                raise HarnessError(f"image {b}: 'last' flags {last}, expected only on the final beat")

            def lanes(w: int) -> np.ndarray:
                out = []
                for i in range(P):
                    v = (w >> (i * p.dw)) & ((1 << p.dw) - 1)
                    if v >> (p.dw - 1):
                        v -= 1 << p.dw
                    out.append(v)
                return np.array(out, dtype=np.int64)

            logits = np.concatenate([lanes(beats[i]) for i in range(lr)])[: self.program.classes]
            # the counts: count_lanes(p) lanes each, running on across the beats of a section
            counts_of, at = [], lr
            row_mask, step = (1 << (P * p.dw)) - 1, count_lanes(p) * p.dw
            for n in sections:
                rows = count_rows(p, n)
                bits = sum((beats[at + r] & row_mask) << (r * P * p.dw) for r in range(rows))
                counts_of.append([(bits >> (j * step)) & ((1 << p.count_width) - 1) for j in range(n)])
                at += rows
            counts = np.array(counts_of[0], dtype=np.int64)
            cls = counts_of[1]
            settle, steps, cycles = counts_of[2]
            if settle >> (p.count_width - 1):  # −1: not settled
                settle -= 1 << p.count_width
            first, lastc = spans[b]
            runs.append(
                CoreRun(
                    trace=traces[b],
                    logits=logits,
                    counts=counts,
                    cycles_by_class={k: int(cls[i]) for i, k in enumerate(CYCLE_CLASSES)},
                    settle_step=settle,
                    steps=steps,
                    cycles=cycles,
                    wall_cycles=lastc - first + 1,
                )
            )
        return runs
