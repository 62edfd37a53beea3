"""Benchmark of the spike-addition engine on a real layer (``equispike bench engine``).

Runs the qkv linear of a random ViT from the factory on the engine under Amaranth's simulator
(no stalls on either stream), checks every current of every step against the golden model's
record, and compares the measured cycles with the ideal ``events x ceil(n_out / P)`` (SPEC §11).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["main", "measure"]


def measure(seed: int = 3, batch: int = 2, lanes: int = 8) -> dict:
    """Cycle count of the engine on ``blocks.0.qkv`` of ``random_vit(seed)`` (``batch`` images)."""
    from ..model.factory import random_images, random_vit
    from ..model.vit import ViTSNN
    from ..model.widths import analyze
    from ..sim.amaranth_tb import run_testbenches, stream_testbench
    from .engine import SpikeAdditionEngine

    art = random_vit(seed)
    sites = ["blocks.0.norm1", "blocks.0.q", "blocks.0.k", "blocks.0.v"]
    res = ViTSNN(art).run(random_images(seed, art, batch), t_max=64, record=set(sites))
    sp = res.records[sites[0]]["spikes"]
    sp = sp.reshape(sp.shape[0], -1, sp.shape[-1])                    # (T, vectors, n_in)
    cur = np.concatenate([res.records[s]["current"] for s in sites[1:]], axis=-1)
    cur = cur.reshape(cur.shape[0], -1, cur.shape[-1])                # (T, vectors, n_out)
    W = np.asarray(art.tensors["blocks.0.qkv.weight"]).T
    bias = np.asarray(art.tensors["blocks.0.qkv.bias"])
    rep = analyze(art)
    width = max(rep.bits[f"{s}.current"] for s in sites[1:])
    T, V, n_in = sp.shape
    eng = SpikeAdditionEngine(W, bias, lanes=lanes, acc_width=width, n_vectors=V)
    C, E = eng.chunks, eng.entries

    beats, events = [], []
    for t in range(T):
        v, i = np.nonzero(sp[t])
        for a, b in zip(v, i, strict=True):
            beats.append({"index": int(b), "vector": int(a), "neg": int(sp[t, a, b] < 0)})
        beats.append({"eos": 1})
        events.append(len(v))
    out: list = []
    last = [0]

    def on_cycle(ctx, c):
        last[0] = c

    tb = stream_testbench([(eng.i_stream, beats)], [(eng.o_stream, T * E, out)],
                          on_cycle=on_cycle, max_cycles=10_000_000)

    async def bench(ctx):
        while ctx.get(eng.busy):
            await ctx.tick()
        await tb(ctx)

    t0 = time.perf_counter()
    run_testbenches(eng, bench, max_cycles=10_000_000)
    wall = time.perf_counter() - t0
    got = np.array(out, dtype=np.int64).reshape(T, V, C * lanes)[..., : eng.n_out]
    mismatches = int(np.count_nonzero(got != cur))
    cycles = last[0] + 1
    ev = np.array(events)
    ideal = int(ev.sum()) * C
    # a step can not end before the previous step's E-beat readout: lower bound on any design
    # with this dense per-step output interface
    bound = int(np.maximum(ev * C + 1, E).sum()) + E
    busy_steps = ev * C >= E
    return dict(layer="blocks.0.qkv", lanes=lanes, chunks=C, vectors=V, steps=T,
                events=int(ev.sum()), ideal=ideal, cycles=cycles, readout_bound=bound,
                utilization=ideal / cycles, bound_utilization=ideal / bound,
                dense_step_utilization=(int((ev * C)[busy_steps].sum())
                                        / max(1, int(np.maximum(ev * C + 1, E)[busy_steps].sum()))),
                compared=int(cur.size), mismatches=mismatches, wall_s=wall)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="equispike bench engine", description=__doc__)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lanes", type=int, default=8)
    a = ap.parse_args(argv)
    r = measure(a.seed, a.batch, a.lanes)
    print(f"engine on {r['layer']} (random_vit seed {a.seed}, batch {a.batch}): P={r['lanes']}, "
          f"{r['chunks']} chunks/row, {r['vectors']} vectors, {r['steps']} steps")
    print(f"  events                {r['events']}")
    print(f"  ideal cycles          {r['ideal']}  (events x chunks)")
    print(f"  measured cycles       {r['cycles']}")
    print(f"  utilization           {r['utilization']:.1%}  (target >= 90%)")
    print(f"  readout-bound cycles  {r['readout_bound']}  -> best possible "
          f"{r['bound_utilization']:.1%} with {r['vectors'] * r['chunks']} output beats/step")
    print(f"  steps with events x chunks >= output beats: {r['dense_step_utilization']:.1%}")
    print(f"  currents compared     {r['compared']}, mismatches {r['mismatches']}"
          f"  ({r['wall_s']:.1f} s Amaranth sim)")
    return 0 if r["mismatches"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
