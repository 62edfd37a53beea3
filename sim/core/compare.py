"""Compare one image's core run (trace, logits, settle step, counters) with the golden SNN's record.

Used for the reference executor (:mod:`equispike.compiler.isasim`) and the RTL alike: every spike
of every site of every step, padding lanes included, the logits, the settle step, the steps run
and the SPEC §10 counts. The first mismatch is reported as (image, step, site, index, expected, got).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...compiler.program import Program
from ...model.vit import SNNResult

__all__ = ["ImageComparison", "SDTGolden", "compare_image", "expected_rows", "sdt_golden"]


@dataclass
class SDTGolden:
    """The spike-driven transformer's golden run (:func:`~equispike.model.sdt.run_sdt`) in the shape
    :func:`compare_image` reads: every site's spikes per step, logits, counts; no settle step (a
    run is exactly ``steps`` steps, SPEC §8 re-injects the stem every step)."""

    records: dict[str, dict[str, np.ndarray]]
    logits: np.ndarray
    settle_step: np.ndarray  # (B,) all −1
    steps: int
    acs: np.ndarray
    macs: np.ndarray


def sdt_golden(art, images: np.ndarray, steps: int | None = None) -> SDTGolden:
    """``run_sdt(art, images, steps, record=True)`` as an :class:`SDTGolden`."""
    from ...model.sdt import run_sdt

    run = run_sdt(art, images, steps, record=True)
    T = next(iter(run.records.values()))["spikes"].shape[0]
    B = run.logits.shape[0]
    return SDTGolden(
        records=run.records,
        logits=run.logits,
        settle_step=np.full(B, -1, dtype=np.int64),
        steps=T,
        acs=run.acs,
        macs=run.macs,
    )


@dataclass
class ImageComparison:
    image: int
    steps_compared: int = 0
    spikes_compared: int = 0
    rows_compared: int = 0
    mismatches: int = 0
    first_mismatch: str | None = None
    logits_equal: bool = False
    settle_equal: bool = False
    energy_equal: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.logits_equal and self.settle_equal and self.energy_equal

    def fail(self, msg: str) -> None:
        self.mismatches += 1
        if self.first_mismatch is None:
            self.first_mismatch = msg


def expected_rows(prog: Program, golden: SNNResult, b: int, t: int) -> dict[int, tuple[str, np.ndarray]]:
    """``S`` row -> (site, expected spikes (P,)) of image ``b`` at step ``t`` (zeros once settled)."""
    P = prog.params.lanes
    out = {}
    for name, sm in prog.sites.items():
        rec = golden.records[name]["spikes"]
        if t < rec.shape[0]:
            s = rec[t, b].reshape(sm.nvec, sm.channels).astype(np.int64)
        else:
            s = np.zeros((sm.nvec, sm.channels), dtype=np.int64)
        pad = np.zeros((sm.nvec, sm.nch * P), dtype=np.int64)
        pad[:, : sm.channels] = s
        rows = pad.reshape(sm.nvec * sm.nch, P)
        for i in range(rows.shape[0]):
            out[sm.base + i] = (name, rows[i])
    return out


def _site_index(prog: Program, name: str, row: int, lane: int) -> tuple[int, ...]:
    sm = prog.sites[name]
    r = row - sm.base
    vec, ch = divmod(r, sm.nch)
    flat = vec * sm.channels + ch * prog.params.lanes + lane
    if ch * prog.params.lanes + lane >= sm.channels:
        return (vec, ch * prog.params.lanes + lane)  # a padding lane
    return tuple(int(i) for i in np.unravel_index(flat, sm.shape))


def compare_image(
    prog: Program,
    golden: SNNResult,
    b: int,
    trace,
    logits: np.ndarray,
    settle: int,
    steps: int,
    counts: np.ndarray,
) -> ImageComparison:
    """Compare image ``b`` of the golden batch run with one core run.

    ``trace`` is a sequence of ``(step, S row, spikes (P,))`` in emission order.
    """
    cmp = ImageComparison(image=b)
    by_step: dict[int, dict[int, np.ndarray]] = {}
    for t, row, s in trace:
        d = by_step.setdefault(int(t), {})
        if int(row) in d:
            cmp.fail(f"image {b}: step {t}: S row {row} traced twice")
        d[int(row)] = np.asarray(s, dtype=np.int64)
    g_settle = int(golden.settle_step[b])
    exp_steps = (g_settle + 1) if g_settle >= 0 else golden.steps
    for t in range(min(steps, exp_steps)):
        exp = expected_rows(prog, golden, b, t)
        got = by_step.get(t, {})
        extra = set(got) - set(exp)
        if extra:
            cmp.fail(f"image {b}: step {t}: unexpected S rows {sorted(extra)[:5]}")
        for row, (site, e) in exp.items():
            if row not in got:
                cmp.fail(f"image {b}: step {t}: site {site}: S row {row} missing from the trace")
                continue
            g = got[row]
            cmp.rows_compared += 1
            cmp.spikes_compared += e.size
            bad = np.flatnonzero(g != e)
            if bad.size:
                lane = int(bad[0])
                idx = _site_index(prog, site, row, lane)
                cmp.fail(
                    f"image {b}: step {t}: site {site}: index {idx}: expected {int(e[lane])}, "
                    f"got {int(g[lane])}"
                )
        cmp.steps_compared += 1
    # after the spikes, so that the first mismatch reported is the earliest spike that differs
    if steps != exp_steps:
        cmp.fail(f"image {b}: steps run: expected {exp_steps}, got {steps}")
    if sorted(by_step) != list(range(steps)):
        cmp.fail(f"image {b}: traced steps {sorted(by_step)[:5]}… do not cover 0..{steps - 1}")
    cmp.logits_equal = bool(np.array_equal(np.asarray(logits, dtype=np.int64), golden.logits[b]))
    if not cmp.logits_equal:
        cmp.fail(
            f"image {b}: logits: expected {golden.logits[b].tolist()}, got {np.asarray(logits).tolist()}"
        )
    cmp.settle_equal = settle == g_settle
    if not cmp.settle_equal:
        cmp.fail(f"image {b}: settle step: expected {g_settle}, got {settle}")
    e = prog.energy(counts)
    cmp.energy_equal = e["acs"] == int(golden.acs[b]) and e["macs"] == int(golden.macs[b])
    if not cmp.energy_equal:
        cmp.notes.append(
            f"image {b}: energy counts: golden ACs {int(golden.acs[b])} "
            f"MACs {int(golden.macs[b])}, "
            f"core ACs {e['acs']} MACs {e['macs']}"
        )
    return cmp
