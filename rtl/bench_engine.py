"""Benchmark of the spike-addition engine on a real layer (``equispike bench engine``).

Runs the qkv linear of a random ViT from the factory on the engine under Amaranth's simulator
(no stalls on either stream), checks every current of every step against the golden model's
record, and compares the measured cycles with the ideal ``events x ceil(n_out / P)`` (SPEC §11):
utilization = ideal / measured engine cycles, with the compact readout (one zero beat per
untouched vector). Also reported: the readout beats, the end-to-end cycles through a
``ZeroVectorExpander`` (a consumer taking every dense beat) and the dense-protocol engine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring

__all__ = ["main", "measure"]


def measure(seed: int = 3, batch: int = 2, lanes: int = 8) -> dict:
    """Cycle count of the engine on ``blocks.0.qkv`` of ``random_vit(seed)`` (``batch`` images)."""
    from ..model.factory import random_images, random_vit
    from ..model.vit import ViTSNN
    from ..model.widths import analyze
    from ..sim.amaranth_tb import run_testbenches, stream_testbench
    from .engine import SpikeAdditionEngine, ZeroVectorExpander

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

    beats, events = [], []
    for t in range(T):
        v, i = np.nonzero(sp[t])
        for a, b in zip(v, i, strict=True):
            beats.append({"index": int(b), "vector": int(a), "neg": int(sp[t, a, b] < 0)})
        beats.append({"eos": 1})
        events.append(len(v))
    ev = np.array(events)
    touched = np.any(sp != 0, axis=2)
    touched[0] |= bool(np.any(bias != 0))            # the bias touches every vector at t = 0

    def run(compact: bool, expand: bool):
        eng = SpikeAdditionEngine(W, bias, lanes=lanes, acc_width=width, n_vectors=V,
                                  compact_zero_vectors=compact)
        C = eng.chunks
        n_beats = sum(eng.readout_beats(int(n)) for n in touched.sum(axis=1))
        top, src = eng, eng.o_stream
        if expand:
            xp = ZeroVectorExpander.for_engine(eng)
            top = Module()
            top.submodules.eng, top.submodules.xp = eng, xp
            wiring.connect(top, eng.o_stream, xp.i_stream)
            src, n_beats = xp.o_stream, T * eng.entries
        out: list = []
        last = [0]

        def on_cycle(ctx, c):
            last[0] = c

        tb = stream_testbench([(eng.i_stream, beats)], [(src, n_beats, out)],
                              on_cycle=on_cycle, max_cycles=10_000_000)

        async def bench(ctx):
            while ctx.get(eng.busy):
                await ctx.tick()
            await tb(ctx)

        run_testbenches(top, bench, max_cycles=10_000_000)
        dense = []
        for b in out:                        # compact zero beat -> C zero beats (scoreboard)
            if isinstance(b, dict):
                dense += [[0] * lanes] * C if b["zero"] else [b["lanes"]]
            else:
                dense.append(b)
        got = np.array(dense, dtype=np.int64).reshape(T, V, C * lanes)[..., : eng.n_out]
        return dict(cycles=last[0] + 1, beats=len(out), chunks=C, entries=eng.entries,
                    mismatches=int(np.count_nonzero(got != cur)))

    t0 = time.perf_counter()
    comp = run(True, False)
    e2e = run(True, True)
    dense = run(False, False)
    wall = time.perf_counter() - t0
    C, E = comp["chunks"], comp["entries"]
    ideal = int(ev.sum()) * C
    return dict(layer="blocks.0.qkv", lanes=lanes, chunks=C, vectors=V, steps=T,
                events=int(ev.sum()), ideal=ideal, cycles=comp["cycles"],
                utilization=ideal / comp["cycles"],
                readout_beats=comp["beats"], dense_beats=T * E,
                e2e_cycles=e2e["cycles"], e2e_utilization=ideal / e2e["cycles"],
                dense_cycles=dense["cycles"], dense_utilization=ideal / dense["cycles"],
                compared=3 * int(cur.size),
                mismatches=comp["mismatches"] + e2e["mismatches"] + dense["mismatches"],
                wall_s=wall)


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
    print(f"  ideal cycles          {r['ideal']}  (events x chunks, SPEC §11)")
    print(f"  measured cycles       {r['cycles']}  (engine, compact readout)")
    print(f"  utilization           {r['utilization']:.1%}  (ideal / measured; target >= 90%)")
    print(f"  readout beats         {r['readout_beats']}  (compact; dense protocol "
          f"{r['dense_beats']})")
    print(f"  end-to-end cycles     {r['e2e_cycles']}  (engine -> ZeroVectorExpander, "
          f"{r['dense_beats']} dense beats: {r['e2e_utilization']:.1%}, bounded by the "
          f"consumer's beats)")
    print(f"  dense-protocol engine {r['dense_cycles']} cycles ({r['dense_utilization']:.1%})")
    print(f"  currents compared     {r['compared']} (3 runs), mismatches {r['mismatches']}"
          f"  ({r['wall_s']:.1f} s Amaranth sim)")
    return 0 if r["mismatches"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
