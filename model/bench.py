"""Golden-model benchmark: ST-BIF neuron updates/s, SNN and QANN inferences/s (medians, one core).

The SNN is timed twice on the same batch: for exactly ``steps`` time steps (``snn_fixed_steps``, the
figure comparable with a float SNN run for a fixed T) and to quiescence (``snn``). BLAS runs on one
thread and the process is pinned to one CPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from .factory import random_images, reference_model
from .neurons import STBIFArray, smallest_int_dtype
from .vit import ViTSNN, qann_forward
from .widths import analyze

__all__ = ["bench_golden"]


def _median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    fn()  # warm-up: allocator and caches
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def pin_one_core() -> str:
    """Pin this process to one CPU and BLAS to one thread so the figures are single-core."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}, BLAS 1 thread"
    return "not pinned (no sched_setaffinity), BLAS 1 thread"


def bench_golden(runs: int = 7, batch: int = 64, steps: int = 32, log: Callable[[str], None] = print) -> dict:
    """Measure the golden model; returns a dict of figures (also logged line by line)."""
    pinned = pin_one_core()
    art = reference_model(0)
    report = analyze(art)
    rng = np.random.default_rng(1)
    # ST-BIF: a batch-64 site of 17 tokens × 64 channels, currents of the reference model's q site
    site = art.site("blocks.0.q")
    shape = (batch, art.dims.tokens, art.dims.dim)
    v_dtype = smallest_int_dtype(report.lo["blocks.0.q.membrane"], report.hi["blocks.0.q.membrane"])
    step_bound = report.bound("blocks.0.q.current")
    currents = [
        rng.integers(-step_bound // 4, step_bound // 4 + 1, shape).astype(v_dtype) for _ in range(steps)
    ]
    neurons = STBIFArray(shape, site.theta, site.qn, site.qp, v_dtype=v_dtype)

    def stbif_run() -> None:
        neurons.reset()
        for c in currents:
            neurons.step(c)

    t_stbif, _ = _median_time(stbif_run, runs)
    updates = int(np.prod(shape)) * steps
    images = random_images(2, art, batch)
    t_qann, _ = _median_time(lambda: qann_forward(art, images), runs)
    snn = ViTSNN(art)
    fixed = snn.run(images, t_max=steps, fixed_steps=True)
    t_fixed, _ = _median_time(lambda: snn.run(images, t_max=steps, fixed_steps=True), max(3, runs // 2))
    res = snn.run(images, t_max=4096)
    t_snn, _ = _median_time(lambda: snn.run(images, t_max=4096), max(3, runs // 2))
    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu": pinned,
        "runs": runs,
        "stbif": {
            "shape": list(shape),
            "steps": steps,
            "membrane_dtype": str(v_dtype),
            "neuron_updates_per_s": round(updates / t_stbif),
            "median_s": round(t_stbif, 5),
        },
        "reference_model": {"dims": vars(art.dims) | {"levels": site.levels}, "batch": batch},
        "qann": {"inferences_per_s": round(batch / t_qann, 1), "median_s": round(t_qann, 5)},
        "snn_fixed_steps": {
            "inferences_per_s": round(batch / t_fixed, 1),
            "median_s": round(t_fixed, 5),
            "steps_run": fixed.steps,
            "neuron_updates_per_s": round(_neuron_count(art) * batch * fixed.steps / t_fixed),
        },
        "snn": {
            "inferences_per_s": round(batch / t_snn, 1),
            "median_s": round(t_snn, 5),
            "steps_run": res.steps,
            "settle_step_max": int(res.settle_step.max()),
            "neuron_updates_per_s": round(_neuron_count(art) * batch * res.steps / t_snn),
        },
        "snn_vs_qann_time": round(t_snn / t_qann, 2),
    }
    log(
        f"ST-BIF: {out['stbif']['neuron_updates_per_s']:.3e} neuron-updates/s "
        f"({shape} x {steps} steps, V {v_dtype}, median of {runs}, {pinned})"
    )
    log(f"QANN:   {out['qann']['inferences_per_s']} inferences/s (reference model, batch {batch})")
    log(f"SNN:    {out['snn_fixed_steps']['inferences_per_s']} inferences/s (exactly {fixed.steps} steps)")
    log(f"SNN:    {out['snn']['inferences_per_s']} inferences/s ({res.steps} steps to quiescence)")
    return out


def _neuron_count(art) -> int:
    """ST-BIF neurons of one image of the converted ViT (every site)."""
    d = art.dims
    N, D = d.tokens, d.dim
    per_block = 8 * N * D + d.heads * N * N + N * d.mlp_dim
    return d.patches * D + d.depth * per_block + N * D
