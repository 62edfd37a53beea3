"""Evaluation of an exported model on the digits test split: float, fake-quant, integer QANN, SNN.

The SNN is run to quiescence (``t_max`` generous) by the golden model. Its logits at every time step
are recovered exactly from one run: the head's output at step t is ``W_head · s_norm(t)[cls] (+ bias
at t = 0)``, so the logits after T steps are ``W_head · Σ_{t<T} s_norm(t)[cls] + bias``, computed
from the recorded spikes of the ``norm`` site. This equals ``ViTSNN(art).run(x, t_max=T).logits``
(a test checks it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.artifact import ViTArtifact
from ..model.energy import AC_PJ, MAC_PJ, dense_counts
from ..model.vit import ViTSNN, qann_forward

__all__ = ["SNNEval", "run_snn", "evaluate_artifact", "accuracy_vs_steps"]


@dataclass
class SNNEval:
    logits: np.ndarray  # (B, classes) final SNN logits
    step_logits: np.ndarray  # (T_run, B, classes): logits after steps 0..t (inclusive)
    settle_step: np.ndarray  # (B,) -1 when not settled
    acs: np.ndarray
    macs: np.ndarray
    energy_pj: np.ndarray
    seconds: float


def _snn_chunk(art: ViTArtifact, x: np.ndarray, t_max: int) -> tuple[np.ndarray, ...]:
    """One chunk of images through the golden SNN: (logits, step_logits, settle_step, acs, macs,
    energy_pj). A pure function of its arguments, so it can run in any worker process."""
    r = ViTSNN(art).run(x, t_max=t_max, record={"norm"}, record_currents=False)
    W = art.tensors["head.weight"].astype(np.int64)
    b = art.tensors["head.bias"].astype(np.int64)
    s = r.records["norm"]["spikes"][:, :, 0, :].astype(np.int64)  # (steps, B, D)
    step_logits = np.cumsum(s, axis=0) @ W.T + b  # (steps, B, classes)
    if not np.array_equal(step_logits[-1], r.logits):
        raise AssertionError("per-step logits reconstruction disagrees with SNNResult.logits")
    return r.logits, step_logits, r.settle_step, r.acs, r.macs, r.energy_pj()


def run_snn(art: ViTArtifact, images: np.ndarray, t_max: int = 2048, chunk: int = 64,
            progress=None, threads: int = 1) -> SNNEval:
    """Run the golden SNN in chunks of ``chunk`` images; keep per-step logits (from the recorded
    ``norm`` spikes). ``threads`` worker processes share the chunks; the chunks do not depend on it
    and the results are merged in order, so the outcome does not either."""
    from ..model.parallel import check_threads, ordered_map

    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    check_threads(threads)
    n = len(images)
    tasks = [(art, images[i : i + chunk], t_max) for i in range(0, n, chunk)]

    def done(k: int, _) -> None:
        if progress is not None:
            progress(min((k + 1) * chunk, n), n)

    t0 = time.perf_counter()
    parts = ordered_map(_snn_chunk, tasks, threads, done)
    steps = max(p[1].shape[0] for p in parts)
    padded = [np.concatenate([sl, np.repeat(sl[-1:], steps - sl.shape[0], axis=0)], axis=0)
              for _, sl, *_ in parts]
    return SNNEval(
        logits=np.concatenate([p[0] for p in parts]),
        step_logits=np.concatenate(padded, axis=1),
        settle_step=np.concatenate([p[2] for p in parts]),
        acs=np.concatenate([p[3] for p in parts]),
        macs=np.concatenate([p[4] for p in parts]),
        energy_pj=np.concatenate([p[5] for p in parts]),
        seconds=time.perf_counter() - t0,
    )


def accuracy_vs_steps(step_logits: np.ndarray, y: np.ndarray, steps: list[int] | None = None
                      ) -> list[tuple[int, float]]:
    """``[(T, accuracy of argmax of the logits after T steps)]``; T counts steps (T=1: step 0 only)."""
    n = step_logits.shape[0]
    if steps is None:
        steps = list(range(1, n + 1))
    out = []
    for T in steps:
        lg = step_logits[min(T, n) - 1]
        out.append((int(T), float((lg.argmax(-1) == y).mean())))
    return out


def _stats(a: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(a)), "min": float(np.min(a)), "median": float(np.median(a)),
            "max": float(np.max(a))}


def evaluate_artifact(
    art: ViTArtifact,
    x: np.ndarray,
    y: np.ndarray,
    t_max: int = 2048,
    float_model=None,
    qat_model=None,
    progress=None,
    curve_steps: list[int] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """All accuracies and SNN statistics as a JSON-serializable dict (the golden SNN over ``threads``
    worker processes; only the ``*_seconds`` timings depend on it)."""
    from .train import accuracy

    out: dict[str, Any] = {"images": int(len(y)), "t_max": int(t_max)}
    if float_model is not None:
        out["float_acc"] = accuracy(float_model, x, y)
    if qat_model is not None:
        out["fake_quant_acc"] = accuracy(qat_model, x, y)
    t0 = time.perf_counter()
    q = qann_forward(art, x)
    out["qann_seconds"] = time.perf_counter() - t0
    out["qann_acc"] = float((q.logits.argmax(-1) == y).mean())
    ev = run_snn(art, x, t_max=t_max, progress=progress, threads=threads)
    out["snn_seconds"] = ev.seconds
    out["snn_acc"] = float((ev.logits.argmax(-1) == y).mean())
    eq = np.all(ev.logits == q.logits, axis=1)
    out["snn_equals_qann_fraction"] = float(eq.mean())
    out["snn_qann_mismatch_images"] = [int(i) for i in np.flatnonzero(~eq)]
    settled = ev.settle_step >= 0
    out["unsettled_images"] = int((~settled).sum())
    out["settle_step"] = _stats(ev.settle_step[settled]) if settled.any() else None
    out["acs_per_image"] = _stats(ev.acs)
    out["macs_per_image"] = _stats(ev.macs)
    out["energy_pj_per_image"] = _stats(ev.energy_pj)
    dense = dense_counts(art)
    dm = sum(m for m, _ in dense.values())
    da = sum(a for _, a in dense.values())
    out["qann_dense_macs"] = int(dm)
    out["qann_dense_acs"] = int(da)
    out["qann_dense_energy_pj"] = float(MAC_PJ * dm + AC_PJ * da)
    out["energy_model"] = f"E = {MAC_PJ} pJ * MACs + {AC_PJ} pJ * ACs (SPEC section 10)"
    if curve_steps is None:
        n = ev.step_logits.shape[0]
        curve_steps = sorted({T for T in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512,
                                          1024, 2048) if T <= n} | {n})
    out["accuracy_vs_T"] = [[T, a] for T, a in accuracy_vs_steps(ev.step_logits, y, curve_steps)]
    out["accuracy_vs_T_all"] = [a for _, a in accuracy_vs_steps(ev.step_logits, y)]
    return out
