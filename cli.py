"""The ``equispike`` command line: one subcommand per job of the chain."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

PROG_DESCRIPTION = """\
equispike: a quantized Transformer, its exactly equivalent spiking network, and FPGA hardware that
runs it. Every link is bit-exact and every figure is measured.
"""


def _emit(obj: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=1, sort_keys=False))


def cmd_check(args: argparse.Namespace) -> int:
    from .model.check import check_artifact, check_random

    def progress(i: int, r, cfg: dict) -> None:
        status = (
            "ok" if r.mismatches == 0 and r.unsettled == 0 else "MISMATCH" if r.mismatches else "UNSETTLED"
        )
        print(
            f"[{i + 1}/{args.random}] depth {cfg['depth']} dim {cfg['dim']} heads {cfg['heads']} "
            f"levels {cfg['levels']}: {r.elements} elements, {r.mismatches} mismatches, "
            f"settled by step {max(r.settle_steps, default=-1)} {status}",
            file=sys.stderr,
        )

    if args.artifact:
        from .model.artifact import load_artifact
        from .model.factory import random_images

        art = load_artifact(args.artifact)
        summary = check_artifact(art, random_images(args.seed, art, args.batch), t_max=args.t_max)
    else:
        summary = check_random(
            args.random, batch=args.batch, seed=args.seed, t_max=args.t_max, progress=progress
        )
    ok = summary["mismatches"] == 0 and summary["unsettled_images"] == 0
    summary["ok"] = ok
    if args.json:
        _emit(summary, True)
    else:
        print(
            f"{summary['cases']} cases, {summary['images']} images, {summary['elements_compared']} "
            f"elements compared, {summary['mismatches']} mismatches, {summary['unsettled_images']} "
            f"unsettled; settle step {summary['settle_step']}"
        )
        if summary["first_mismatch"]:
            print(f"first mismatch: {summary['first_mismatch']}")
    return 0 if ok else 1


def cmd_widths(args: argparse.Namespace) -> int:
    from .model.artifact import load_artifact
    from .model.widths import analyze

    report = analyze(load_artifact(args.artifact))
    if args.json:
        _emit({k: {"lo": lo, "hi": hi, "bits": b} for k, lo, hi, b in report.table()}, True)
    else:
        for k, lo, hi, b in report.table():
            print(f"{k:40s} [{lo}, {hi}] {b} bits")
    return 0


def cmd_random_model(args: argparse.Namespace) -> int:
    from .model.artifact import save_artifact
    from .model.factory import random_vit

    art = random_vit(
        args.seed,
        image=args.image,
        patch=args.patch,
        dim=args.dim,
        heads=args.heads,
        depth=args.depth,
        mlp_ratio=args.mlp_ratio,
        levels=args.levels,
        classes=args.classes,
    )
    path = save_artifact(art, args.out)
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "golden":
        from .model.bench import bench_golden

        out = bench_golden(runs=args.runs, log=(lambda s: print(s, file=sys.stderr)) if args.json else print)
        _emit(out, args.json)
        return 0
    module = {"engine": "bench_engine", "units": "bench_units"}[args.what]
    import importlib

    try:
        mod = importlib.import_module(f"equispike.rtl.{module}")
    except ModuleNotFoundError:
        print(f"equispike: benchmark {args.what!r} is not available in this build", file=sys.stderr)
        return 2
    return int(mod.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="equispike",
        description=PROG_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser(
        "check",
        help="prove the SNN (summed over time) equals the integer QANN",
        description="Build random models (or load an artifact), run the integer QANN and "
        "the time-stepped SNN to quiescence, and compare every site's settled codes and "
        "every logit. Exits non-zero on any mismatch or unsettled image.",
    )
    c.add_argument(
        "--random",
        type=int,
        default=50,
        metavar="N",
        help="number of random models (depth 1-4, levels 4-32, several dims); default 50",
    )
    c.add_argument("--artifact", help="check this artifact on random images instead")
    c.add_argument("--batch", type=int, default=8, help="images per model (default 8)")
    c.add_argument("--seed", type=int, default=0, help="seed of models and images (default 0)")
    c.add_argument("--t-max", type=int, default=2048, help="step cap of a run (default 2048)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=cmd_check)

    w = sub.add_parser(
        "widths",
        help="worst-case bounds and bit widths of an artifact (SPEC §9)",
        description="Every accumulator, membrane, tracer and operator intermediate of the "
        "artifact, with its worst-case range and the signed width that holds it.",
    )
    w.add_argument("artifact")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_widths)

    r = sub.add_parser(
        "random-model",
        help="write a random calibrated integer ViT artifact",
        description="Random int8 weights, thresholds calibrated on random images.",
    )
    r.add_argument("out", help="output artifact path (.esa)")
    r.add_argument("--seed", type=int, default=0)
    for name, default in (
        ("image", 8),
        ("patch", 2),
        ("dim", 32),
        ("heads", 2),
        ("depth", 1),
        ("mlp-ratio", 2),
        ("levels", 16),
        ("classes", 10),
    ):
        r.add_argument(f"--{name}", type=int, default=default, help=f"default {default}")
    r.set_defaults(func=cmd_random_model)

    b = sub.add_parser(
        "bench",
        help="measure performance (golden model, engine, norm units)",
        description="golden: ST-BIF neuron-updates/s and SNN/QANN inferences/s on one core. "
        "engine: cycles and utilization of the spike-addition engine. units: latency and "
        "throughput of the differential softmax/LayerNorm units.",
    )
    b.add_argument("what", choices=["golden", "engine", "units"])
    b.add_argument("--runs", type=int, default=7, help="runs per figure, median reported (golden)")
    b.add_argument("--json", action="store_true")
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the engine/units benchmark")
    b.set_defaults(func=cmd_bench)

    for modname in ("equispike.quant.commands", "equispike.rtl.synth"):
        try:
            mod = __import__(modname, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:  # ArtifactError is a ValueError
        print(f"equispike {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
