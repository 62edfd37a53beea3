"""Results for the README: ``python -m equispike.quant.report``.

For each level count (default 8, 16, 32) it trains (or reuses) a run under ``runs/`` — the default
level in ``runs/default`` (the ``demo`` run), the others in ``runs/levels<L>``, which reuse the
default run's float model (float pre-training does not depend on the levels) — exports it,
evaluates float / fake-quant / integer QANN / SNN on the digits test split, and writes

* ``docs/results.md``: the accuracy/energy table and the accuracy-vs-time-step table,
* ``docs/accuracy_vs_T.png``: SNN accuracy when stopped after T steps, per level,
* ``docs/results.json``: every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

__all__ = ["main"]

CURVE_T = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128)


def _run(levels: int, default_levels: int, runs: Path, retrain: bool, t_max: int,
         device: str, quiet: bool) -> dict:
    from .commands import evaluate_paths, export_checkpoint
    from .qvit import ViTConfig
    from .train import CheckpointError, TrainConfig, load_checkpoint, train_all

    mc, tc = ViTConfig(levels=levels), TrainConfig()
    d = runs / ("default" if levels == default_levels else f"levels{levels}")
    d.mkdir(parents=True, exist_ok=True)
    base = runs / "default" / "float.pt"
    if d.name != "default" and base.is_file() and not (d / "float.pt").is_file():
        shutil.copy2(base, d / "float.pt")
    cached = False
    if (d / "qat.pt").is_file() and not retrain:
        try:
            _, blob = load_checkpoint(d / "qat.pt", expect_stage="qat", expect_config=mc)
            cached = TrainConfig.from_dict(blob["train_config"]) == tc
        except CheckpointError:
            cached = False
    if not cached:
        train_all(mc, tc, d, device=device, quiet=quiet, reuse_float=not retrain)
    art = export_checkpoint(d / "qat.pt", d / "model.esa")
    r = evaluate_paths(art, d / "qat.pt", d / "float.pt", t_max, None, quiet=quiet)
    _, blob = load_checkpoint(d / "qat.pt", expect_stage="qat")
    r["train_meta"] = blob.get("meta", {})
    (d / "eval.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    return r


def _acc_at(r: dict, T: int) -> float:
    curve = r["accuracy_vs_T_all"]
    return curve[min(T, len(curve)) - 1]


def tables(results: dict[int, dict]) -> str:
    L = sorted(results)
    r0 = results[L[0]]
    lines = [
        "### QAT and conversion on sklearn digits (8×8)",
        "",
        "Model: " + ", ".join(f"{k} {v}" for k, v in r0["dims"].items())
        + f" (17 tokens), residual unit 2^-{r0['residual_R']}; "
        f"{r0['split']}. SNN run to quiescence (t_max {r0['t_max']}).",
        "",
        "| levels | float | fake-quant | integer QANN | SNN | SNN == QANN (logits) | unsettled "
        "| settle step min/med/max | ACs / image | MACs / image | energy / image | "
        "QANN dense MACs / ACs (energy) | train time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in L:
        r = results[lv]
        st = r["settle_step"] or {}
        tm = r.get("train_meta", {})
        tt = tm.get("float_seconds", 0.0) + tm.get("qat_seconds", 0.0)
        lines.append(
            f"| {lv} | {100 * r['float_acc']:.2f} % | {100 * r['fake_quant_acc']:.2f} % | "
            f"{100 * r['qann_acc']:.2f} % | {100 * r['snn_acc']:.2f} % | "
            f"{100 * r['snn_equals_qann_fraction']:.1f} % | {r['unsettled_images']} | "
            f"{st.get('min', 0):.0f} / {st.get('median', 0):.0f} / {st.get('max', 0):.0f} | "
            f"{r['acs_per_image']['mean']:,.0f} | {r['macs_per_image']['mean']:,.0f} | "
            f"{r['energy_pj_per_image']['mean'] / 1e3:,.1f} nJ | "
            f"{r['qann_dense_macs']:,} / {r.get('qann_dense_acs', 0):,} "
            f"({r['qann_dense_energy_pj'] / 1e3:,.1f} nJ) | "
            f"{tt:.0f} s (float {tm.get('float_seconds', 0):.0f} + QAT "
            f"{tm.get('qat_seconds', 0):.0f}) |"
        )
    lines += [
        "",
        f"Energy: {r0['energy_model']}; counted by one rule (model/energy.py): AW and SESA one AC per "
        "nonzero spike × fan-out, the analog first layer its MACs, each recomputed softmax row over n "
        "2n MACs + 5n − 2 ACs and LayerNorm row over D 4D + 3 MACs + 6D ACs; the dense QANN the same "
        "rows without input accumulations and output deltas, its linears and attention products as MACs.",
        "",
        "### SNN accuracy when stopped after T time steps",
        "",
        "| T | " + " | ".join(f"L={lv}" for lv in L) + " |",
        "|---:|" + "---:|" * len(L),
    ]
    longest = max(len(results[lv]["accuracy_vs_T_all"]) for lv in L)
    for T in [t for t in CURVE_T if t <= longest] + ([longest] if longest not in CURVE_T else []):
        lines.append(f"| {T} | " + " | ".join(f"{100 * _acc_at(results[lv], T):.1f} %"
                                               for lv in L) + " |")
    lines.append("| QANN | " + " | ".join(f"{100 * results[lv]['qann_acc']:.1f} %"
                                           for lv in L) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for lv in sorted(results):
        r = results[lv]
        curve = r["accuracy_vs_T_all"]
        line, = ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=f"SNN, L={lv}")
        ax.axhline(100 * r["qann_acc"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("time steps T (SNN stopped after T steps)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits ViT: SNN accuracy vs time step (dotted: integer QANN)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m equispike.quant.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--runs", default="runs", help="runs directory (default %(default)s)")
    ap.add_argument("--docs", default="docs", help="output directory (default %(default)s)")
    ap.add_argument("--t-max", type=int, default=2048)
    ap.add_argument("--retrain", action="store_true", help="ignore cached runs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from .qvit import ViTConfig

    torch.set_num_threads(args.threads)
    default_levels = ViTConfig().levels
    order = sorted(args.levels, key=lambda lv: lv != default_levels)  # default first: float.pt
    results: dict[int, dict] = {}
    t0 = time.perf_counter()
    for lv in order:
        print(f"[report] levels {lv}", file=sys.stderr)
        results[lv] = _run(lv, default_levels, Path(args.runs), args.retrain, args.t_max,
                           args.device, args.quiet)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    md = tables(results)
    (docs / "results.md").write_text(md)
    slim = {lv: {k: v for k, v in r.items() if k != "snn_qann_mismatch_images"}
            for lv, r in results.items()}
    (docs / "results.json").write_text(json.dumps(slim, indent=1, sort_keys=True) + "\n")
    plot(results, docs / "accuracy_vs_T.png")
    print(md)
    print(f"wrote {docs / 'results.md'}, {docs / 'results.json'}, {docs / 'accuracy_vs_T.png'} "
          f"({time.perf_counter() - t0:.0f} s)")
    ok = all(r["snn_equals_qann_fraction"] == 1.0 for r in results.values())
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
