"""Run images through the core under Verilator and compare each with the golden model.

:func:`run_core` is what ``equispike core run`` and the end-to-end tests call: it compiles the
artifact for a core of ``lanes`` lanes (:func:`~equispike.compiler.program.fit_params` unless
``params`` is given), builds it once, runs the images in batches and compares every image with
``ViTSNN.run(record=True)`` (a spike-driven transformer, ``arch: "sdt"``: with
``run_sdt(record=True)``, :func:`~.compare.sdt_golden`) — every spike of every site of every step
(padding lanes included), the logits, the settle step, the steps run and the SPEC §10 event
counts — and summarises the cycles against the SPEC §11 ideal.

Every batch runs once per seed of the power-up values (``init_seeds``, by default
:func:`~equispike.sim.build.init_seeds`, as every cocotb test does): each run is compared with the
golden model, and the core's cycle counts must not depend on the seed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...compiler.isa import CoreParams
from ...compiler.program import Program, compile_artifact, fit_params, image_rows
from ...compiler.sdt_program import compile_sdt, fit_sdt_params
from ...model.artifact import ViTArtifact
from ...model.sdt import SDTArtifact
from ...model.vit import ViTSNN, qann_forward
from ...rtl.core.core import CYCLE_CLASSES
from ..build import init_seeds as default_init_seeds
from ..build import parse_init_seeds
from .compare import compare_image, sdt_golden
from .harness import CoreSim

__all__ = ["CoreReport", "run_core", "default_build_dir"]


@dataclass
class CoreReport:
    """Summary of a core run over ``images`` images (counts of images unless named otherwise).

    Each image ran once per seed of ``init_seeds``: ``steps_compared``, ``spikes_compared``,
    ``rows_compared`` and ``mismatches`` add up every run; an image counts in ``logits_equal``,
    ``settle_equal`` and ``energy_equal`` when it is equal in every run. The cycle figures are
    those of the first seed's run (a later seed whose cycle counts differ is a mismatch).
    """

    images: int
    lanes: int
    steps_compared: int
    spikes_compared: int
    rows_compared: int
    mismatches: int
    logits_equal: int
    settle_equal: int
    energy_equal: int
    first_mismatch: str | None
    accuracy: float | None  # core logits' argmax against the labels
    qann_accuracy: float | None  # the integer QANN's (sdt: the golden run's), same images
    cycles_per_image: float  # median, the core's own count (last input beat to first output beat)
    ideal_cycles_per_image: float  # median, SPEC §11
    utilization: float  # Σ ideal / Σ measured
    cycles_by_unit: dict[str, float]  # mean per image
    steps_per_image: float  # median
    build_seconds: float
    sim_seconds: float
    golden_seconds: float
    sim_cycles_per_second: float
    params: dict = field(default_factory=dict)
    init_seeds: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        n = self.images
        return (
            n > 0
            and self.mismatches == 0
            and self.logits_equal == n
            and self.settle_equal == n
            and self.energy_equal == n
            and self.spikes_compared > 0
        )

    def as_dict(self) -> dict:
        return asdict(self)


def default_build_dir(art_path: str | Path, lanes: int, norm_units: int = 1) -> Path:
    """``build/core/<artifact stem>-p<lanes>-n<norm_units>``: one Verilator build per core."""
    return Path("build") / "core" / f"{Path(art_path).stem}-p{lanes}-n{norm_units}"


def run_core(
    art: ViTArtifact | SDTArtifact,
    images: np.ndarray,
    *,
    lanes: int = 64,
    norm_units: int = 1,
    build_dir: str | Path,
    labels: np.ndarray | None = None,
    params: CoreParams | None = None,
    program: Program | None = None,
    batch: int = 20,
    seed: int = 1,
    init_seeds: Sequence[str | int] | str | None = None,
    idle_permille: int = 0,
    stall_permille: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CoreReport:
    """Run ``images`` on the core and compare each with the golden SNN.

    ``images``: integer codes ``(B, C, H, W)``, or ``(B, H, W)`` for one channel.

    ``idle_permille`` / ``stall_permille`` make the harness leave the input idle / hold ``ready``
    low on the output that often (per mille of cycles, from ``seed``).

    ``init_seeds``: the seeds of the power-up values, one run of every image each (a positive
    integer: random values from that Verilator seed; ``"zero"``: all 0); a sequence or a
    comma-separated string, by default :func:`~equispike.sim.build.init_seeds`
    (``EQUISPIKE_INIT_SEEDS``, else seed 1).
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[0] < 1:
        raise ValueError(f"images must be (B >= 1, [C,] H, W), got shape {images.shape}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if not isinstance(art, ViTArtifact | SDTArtifact):
        raise TypeError(f"art must be a ViTArtifact or an SDTArtifact, got {type(art).__name__}")
    if init_seeds is None:
        seeds = default_init_seeds()
    else:
        text = init_seeds if isinstance(init_seeds, str | int) else ",".join(map(str, init_seeds))
        seeds = parse_init_seeds(text, source="init_seeds")
        if not seeds:
            raise ValueError("init_seeds: at least one seed")
    sdt = isinstance(art, SDTArtifact)
    say = progress or (lambda _msg: None)
    if program is None:
        if sdt:
            params = params or fit_sdt_params(art, lanes, norm_units=norm_units)
            program = compile_sdt(art, params)
        else:
            params = params or fit_params(art, lanes, norm_units=norm_units)
            program = compile_artifact(art, params)
    prog = program
    sim = CoreSim(prog, Path(build_dir))
    t0 = time.perf_counter()
    say(f"building the core (P = {prog.params.lanes}) in {build_dir}")
    sim.build()
    build_s = time.perf_counter() - t0

    snn = None if sdt else ViTSNN(art)
    golden_logits = []
    totals = dict(steps=0, spikes=0, rows=0, mism=0, logits=0, settle=0, energy=0)
    first: str | None = None
    cycles, ideal, steps, correct = [], [], [], 0
    by_class = dict.fromkeys(CYCLE_CLASSES, 0)
    sim_s = golden_s = 0.0
    sim_cycles = 0
    n = len(images)
    for lo in range(0, n, batch):
        xb = images[lo : lo + batch]
        t1 = time.perf_counter()
        golden = sdt_golden(art, xb) if sdt else snn.run(xb, record=True)
        golden_logits.append(golden.logits)
        golden_s += time.perf_counter() - t1
        rows = [image_rows(prog, art, im) for im in xb]
        by_seed = []
        for init in seeds:
            t1 = time.perf_counter()
            by_seed.append(sim.run(rows, seed=seed + lo, init_seed=init, idle_permille=idle_permille,
                                   stall_permille=stall_permille))
            sim_s += time.perf_counter() - t1
        for b in range(len(xb)):
            equal = dict(logits=True, settle=True, energy=True)
            r0 = by_seed[0][b]
            for init, runs in zip(seeds, by_seed, strict=True):
                r = runs[b]
                sim_cycles += r.wall_cycles
                c = compare_image(prog, golden, b, r.trace, r.logits, r.settle_step, r.steps, r.counts)
                totals["steps"] += c.steps_compared
                totals["spikes"] += c.spikes_compared
                totals["rows"] += c.rows_compared
                totals["mism"] += c.mismatches
                equal["logits"] &= c.logits_equal
                equal["settle"] &= c.settle_equal
                equal["energy"] &= c.energy_equal
                msg = c.first_mismatch or "; ".join(c.notes)
                if not msg and (r.cycles, r.cycles_by_class) != (r0.cycles, r0.cycles_by_class):
                    totals["mism"] += 1
                    msg = (f"image {b}: {r.cycles} cycles {r.cycles_by_class}, with initial values "
                           f"{seeds[0]} {r0.cycles} cycles {r0.cycles_by_class}")
                if first is None and msg:
                    msg = msg.replace(f"image {b}:", f"image {lo + b}:", 1)
                    first = f"{msg} (initial values {init})" if len(seeds) > 1 else msg
            for k, v in equal.items():
                totals[k] += int(v)
            r = r0
            cycles.append(r.cycles)
            ideal.append(prog.ideal_cycles(r.counts))
            steps.append(r.steps)
            for k, v in r.cycles_by_class.items():
                by_class[k] += v
            if labels is not None:
                correct += int(np.argmax(r.logits) == int(labels[lo + b]))
        done = min(lo + batch, n)
        say(
            f"core run: {done}/{n} images, {totals['mism']} mismatches, "
            f"median {statistics.median(cycles):.0f} cycles/image"
        )
    acc = qacc = None
    if labels is not None:
        acc = correct / n
        q = np.concatenate(golden_logits) if sdt else qann_forward(art, images).logits
        qacc = float(np.mean(np.argmax(q, axis=1) == np.asarray(labels)))
    return CoreReport(
        images=n,
        lanes=prog.params.lanes,
        steps_compared=totals["steps"],
        spikes_compared=totals["spikes"],
        rows_compared=totals["rows"],
        mismatches=totals["mism"],
        logits_equal=totals["logits"],
        settle_equal=totals["settle"],
        energy_equal=totals["energy"],
        first_mismatch=first,
        accuracy=acc,
        qann_accuracy=qacc,
        cycles_per_image=float(statistics.median(cycles)),
        ideal_cycles_per_image=float(statistics.median(ideal)),
        utilization=sum(ideal) / max(1, sum(cycles)),
        cycles_by_unit={k: v / n for k, v in by_class.items()},
        steps_per_image=float(statistics.median(steps)),
        build_seconds=build_s,
        sim_seconds=sim_s,
        golden_seconds=golden_s,
        sim_cycles_per_second=sim_cycles / max(sim_s, 1e-9),
        params=asdict(prog.params),
        init_seeds=list(seeds),
    )
