"""Latency/throughput benchmark of the differential norm units and attention datapaths.

``main(argv)`` builds each unit for block 0 of a factory model (widths from the width analysis),
runs it in the Amaranth simulator at full input/output rate and prints the measured cycles next to
the figures stated in the docstrings (``cycles_per_row`` / ``cycles_per_frame`` /
``cycles_per_step``). Wired as ``equispike bench units``.
"""

from __future__ import annotations

import argparse

import numpy as np

__all__ = ["main", "measure_all"]


def _row_cycles(unit, n, deltas):
    """Cycles from a row's first input beat to its last output beat, per row of ``deltas``."""
    from ..sim.norm_support import measure_stream

    steps, rows, _ = deltas.shape
    nout = rows * n + sum(n if deltas[t, r].any() else 1 for t in range(1, steps)
                          for r in range(rows))
    in_c, out_c, beats = measure_stream(unit, [int(v) for v in deltas.reshape(-1)], nout)
    last = [c for c, b in zip(out_c, beats, strict=True) if b["last"]]
    return [last[i] - in_c[i * n] + 1 for i in range(len(last))], last


def measure_all(seed: int = 0, dim: int = 32, heads: int = 2) -> list[dict]:
    """Measured and stated cycle counts of every unit (list of dict rows)."""
    from ..model.factory import random_vit
    from ..model.widths import analyze
    from ..sim.norm_support import measure_stream
    from .attention import SDSAUnit, SpikeProductUnit
    from .layernorm_unit import LayerNormUnit
    from .softmax_unit import SoftmaxUnit

    art = random_vit(seed, depth=1, dim=dim, heads=heads)
    rep = analyze(art)
    d = art.dims
    rows_out = []
    rng = np.random.default_rng(seed)

    # norm units: step 0 = 2 changed rows, step 1 = row 0 changed, row 1 unchanged
    for name, unit, n in (
        ("softmax", SoftmaxUnit.from_artifact(art, 0, rows=2, report=rep), d.tokens),
        ("layernorm", LayerNormUnit.from_artifact(art, "blocks.0.ln1", rows=2, report=rep),
         d.dim),
    ):
        deltas = rng.integers(-50, 51, (2, 2, n))
        deltas[1, 1] = 0
        lat, last = _row_cycles(unit, n, deltas)
        rows_out.append(dict(unit=name, case=f"changed row (n={n})", measured=lat[2],
                             stated=unit.cycles_per_row(True), per_element=lat[2] / n,
                             interval=last[2] - last[1]))
        rows_out.append(dict(unit=name, case=f"unchanged row (n={n})", measured=lat[3],
                             stated=unit.cycles_per_row(False), per_element=lat[3] / n,
                             interval=last[3] - last[2]))

    # SESA: one frame with a given number of events
    for which in ("qk", "av"):
        unit = SpikeProductUnit.for_block(art, 0, which, report=rep)
        for ev in (1, 32, 128):
            frame = [{"b": int(i % 2), "row": int(rng.integers(min(unit.n, unit.m))),
                      "col": int(rng.integers(unit.k)), "sign": 1} for i in range(ev)]
            frame.sort(key=lambda e: -e["b"])
            frame[-1]["last"] = 1
            in_c, out_c, _ = measure_stream(unit, frame, unit.n * unit.m)
            meas = out_c[-1] - in_c[0] + 1
            rows_out.append(dict(unit=f"sesa.{which}", case=f"frame, {ev} events",
                                 measured=meas, stated=unit.cycles_per_frame(ev),
                                 per_element=meas / (unit.n * unit.m), interval=None))

    # SDSA: one step
    for mode in (1, 3):
        unit = SDSAUnit(mode, d.tokens, d.dim, d.heads)
        q = (rng.random((d.tokens, d.dim)) < 0.25).astype(int)
        beats = [{"q": int(sum(int(b) << i for i, b in enumerate(q[n]))), "k": (1 << d.dim) - 1,
                  "v": (1 << d.dim) - 1} for n in range(d.tokens)]
        in_c, out_c, _ = measure_stream(unit, beats, d.tokens)
        meas = out_c[-1] - in_c[0] + 1
        stated = unit.cycles_per_step(None if mode == 1 else [int(x) for x in q.sum(axis=1)])
        rows_out.append(dict(unit=f"sdsa{mode}", case=f"step, {d.tokens} tokens, q density 0.25",
                             measured=meas, stated=stated, per_element=meas / d.tokens,
                             interval=None))
    return rows_out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="equispike bench units", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--heads", type=int, default=2)
    args = ap.parse_args(argv)
    rows = measure_all(args.seed, args.dim, args.heads)
    print(f"{'unit':<11} {'case':<38} {'measured':>8} {'stated':>7} {'cyc/elem':>9} "
          f"{'row interval':>12}")
    bad = 0
    for r in rows:
        iv = "" if r["interval"] is None else str(r["interval"])
        flag = "" if r["measured"] == r["stated"] else "  MISMATCH"
        bad += bool(flag)
        print(f"{r['unit']:<11} {r['case']:<38} {r['measured']:>8} {r['stated']:>7} "
              f"{r['per_element']:>9.2f} {iv:>12}{flag}")
    print("cycles: first input beat to last output beat, full rate; cyc/elem per output "
          "element (per token for SDSA); row interval: last output to next row's last output")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
