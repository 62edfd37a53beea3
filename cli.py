"""The ``equispike`` command line: one subcommand per job of the chain.

Exit status, the same for every subcommand: 0 success; 1 a mismatch, an unsettled run or a missed
target; 2 bad input or usage (argparse's own usage errors included). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .model.neurons import LEVEL_CHOICES

__all__ = ["EXIT_OK", "EXIT_MISMATCH", "EXIT_BAD_INPUT", "build_parser", "main"]

EXIT_OK = 0
EXIT_MISMATCH = 1  # a comparison found a difference, a run did not settle, a target was missed
EXIT_BAD_INPUT = 2  # bad input or usage: unreadable or invalid files, bad option values

PROG_DESCRIPTION = """\
equispike: a quantized Transformer, its exactly equivalent spiking network, and FPGA hardware that
runs it. Every link is bit-exact and every figure is measured.
"""

PROG_EPILOG = """\
exit status (every subcommand):
  0  success
  1  a mismatch, an unsettled run or a missed target
  2  bad input or usage: an unreadable or invalid file, a bad option value (one line on stderr)
set EQUISPIKE_TRACEBACK=1 to see the traceback of an error.
"""


THREADS_HELP = (
    "worker processes, one core each, that share {what}; the output is the same for every N "
    "(default %(default)s)"
)



def _case_line(i: int, cases: int, r, shape: str, cfg: dict, tail: str) -> None:
    """One progress line of ``check --random``: the case's model, what it compared, its status."""
    print(
        f"[{i + 1}/{cases}] depth {cfg['depth']} dim {cfg['dim']} heads {cfg['heads']} {shape}: "
        f"{r.elements} elements, {r.mismatches} mismatches, {tail}",
        file=sys.stderr,
    )

def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _emit(obj: dict) -> None:
    print(json.dumps(obj, indent=1, sort_keys=False))


def cmd_check(args: argparse.Namespace) -> int:
    arch = args.arch
    if args.artifact:
        from .model.artifact import ArtifactError, artifact_arch

        found = artifact_arch(args.artifact)
        if arch is not None and found is not None and found != arch:
            raise ArtifactError(f"arch: --arch {arch}, but {args.artifact} is an {found!r} artifact")
        arch = found if found == "sdt" else arch
    if arch == "sdt":
        return _check_sdt(args)
    from .model.check import check_artifact, check_random

    cases = args.random if args.random is not None else 50

    def progress(i: int, r, cfg: dict) -> None:
        status = (
            "ok" if r.mismatches == 0 and r.unsettled == 0 else "MISMATCH" if r.mismatches else "UNSETTLED"
        )
        _case_line(i, cases, r, f"levels {cfg['levels']}", cfg,
                   f"settled by step {max(r.settle_steps, default=-1)} {status}")

    if args.artifact:
        from .model.artifact import load_artifact
        from .model.factory import random_images

        art = load_artifact(args.artifact)
        summary = check_artifact(art, random_images(args.seed, art, args.batch), t_max=args.t_max,
                                 threads=args.threads)
    else:
        summary = check_random(cases, batch=args.batch, seed=args.seed, t_max=args.t_max, progress=progress,
                               threads=args.threads)
    ok = summary["ok"]
    if args.json:
        _emit(summary)
    else:
        print(
            f"{summary['cases']} cases, {summary['images']} images, {summary['elements_compared']} "
            f"elements compared, {summary['mismatches']} mismatches, {summary['unsettled_images']} "
            f"unsettled; settle step {summary['settle_step']}"
        )
        if summary["first_mismatch"]:
            print(f"first mismatch: {summary['first_mismatch']}")
    if summary["elements_compared"] == 0:
        print("equispike check: nothing was compared", file=sys.stderr)
    return EXIT_OK if ok else EXIT_MISMATCH


def _check_sdt(args: argparse.Namespace) -> int:
    """``check`` of the spike-driven transformer: golden model == int64 PyTorch forward, after every
    step, with every bounded intermediate inside its width."""
    from .quant.sdt_check import check_sdt_artifact, check_sdt_random

    cases = args.random if args.random is not None else 50

    def progress(i: int, r, cfg: dict) -> None:
        status = "ok" if r.mismatches == 0 and r.width_violations == 0 else (
            "WIDTH" if r.width_violations else "MISMATCH")
        _case_line(i, cases, r, f"{cfg['attention']} T {cfg['timesteps']}", cfg,
                   f"{r.quantities_checked} quantities within their widths {status}")

    if args.artifact:
        from .model.factory import random_images
        from .model.sdt import load_sdt_artifact

        art = load_sdt_artifact(args.artifact)
        summary = check_sdt_artifact(art, random_images(args.seed, art, args.batch), threads=args.threads)
    else:
        summary = check_sdt_random(cases, batch=args.batch, seed=args.seed, progress=progress,
                                   threads=args.threads)
    if args.json:
        _emit(summary)
    else:
        print(
            f"sdt: {summary['cases']} cases, {summary['images']} images, {summary['elements_compared']} "
            f"elements compared (spikes and logits, every step), {summary['mismatches']} mismatches, "
            f"{summary['width_violations']} width violations ({summary['quantities_checked']} bounded "
            f"quantities checked); steps {summary['steps']['min']}-{summary['steps']['max']}"
        )
        if summary["first_mismatch"]:
            print(f"first mismatch: {summary['first_mismatch']}")
    if summary["elements_compared"] == 0:
        print("equispike check: nothing was compared", file=sys.stderr)
    return EXIT_OK if summary["ok"] else EXIT_MISMATCH


def cmd_widths(args: argparse.Namespace) -> int:
    from .model.artifact import artifact_arch, load_artifact

    if artifact_arch(args.artifact) == "sdt":
        from .model.sdt import load_sdt_artifact
        from .model.sdt_widths import analyze_sdt

        report = analyze_sdt(load_sdt_artifact(args.artifact))
    else:
        from .model.widths import analyze

        report = analyze(load_artifact(args.artifact))
    if args.json:
        _emit({k: {"lo": lo, "hi": hi, "bits": b} for k, lo, hi, b in report.table()})
    else:
        for k, lo, hi, b in report.table():
            print(f"{k:40s} [{lo}, {hi}] {b} bits")
    return EXIT_OK


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
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "golden":
        from .model.bench import bench_golden

        log = (lambda s: print(s, file=sys.stderr)) if args.json else print
        out = bench_golden(runs=args.runs, log=log)
        if args.json:
            _emit(out)
        return EXIT_OK
    if args.what == "engine":
        from .rtl import bench_engine

        if not args.json:
            return int(bench_engine.main(["--seed", str(args.seed), "--batch", str(args.batch),
                                          "--lanes", str(args.lanes)]) or 0)
        r = bench_engine.measure(args.seed, args.batch, args.lanes)
        _emit({"seed": args.seed, "batch": args.batch, **r})
        return EXIT_OK if r["mismatches"] == 0 else EXIT_MISMATCH
    from .rtl import bench_units

    if not args.json:
        return int(bench_units.main(["--seed", str(args.seed), "--dim", str(args.dim),
                                     "--heads", str(args.heads)]) or 0)
    rows = bench_units.measure_all(args.seed, args.dim, args.heads)
    bad = sum(r["measured"] != r["stated"] for r in rows)
    _emit({"seed": args.seed, "dim": args.dim, "heads": args.heads, "rows": rows, "mismatches": bad})
    return EXIT_OK if bad == 0 else EXIT_MISMATCH


def _add_bench(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="measure performance (golden model, engine, norm units)",
        description="Performance figures. golden: ST-BIF neuron updates/s and SNN/QANN inferences/s on "
        "one core. engine: cycles and utilization of the spike-addition engine on a real layer "
        "(Amaranth simulator). units: latency of the differential softmax/LayerNorm units and the "
        "attention datapaths. Options follow the benchmark's name, e.g. "
        "'equispike bench golden --runs 3 --json'.",
    )
    bsub = b.add_subparsers(dest="what", metavar="BENCHMARK", required=True)
    json_help = "print the figures as one JSON object on stdout (progress goes to stderr)"
    g = bsub.add_parser(
        "golden",
        help="golden-model speed (neuron updates/s, inferences/s)",
        description="Pinned to one core: ST-BIF neuron updates/s on a batch-64 site of the reference "
        "model, integer QANN and SNN inferences/s; medians over --runs timed runs.",
    )
    g.add_argument("--runs", type=positive_int, default=7,
                   help="timed runs per figure; the median is reported (default %(default)s)")
    g.add_argument("--json", action="store_true", help=json_help)
    e = bsub.add_parser(
        "engine",
        help="spike-addition engine utilization on a real layer",
        description="The qkv layer of a factory model on the engine under the Amaranth simulator: "
        "events, ideal and measured cycles, utilization, every current compared with the golden model. "
        "Exit 1 on a mismatch.",
    )
    e.add_argument("--seed", type=nonnegative_int, default=3,
                   help="seed of the factory model and its images (default %(default)s)")
    e.add_argument("--batch", type=positive_int, default=2, help="images run (default %(default)s)")
    e.add_argument("--lanes", type=positive_int, default=8, help="engine lanes P (default %(default)s)")
    e.add_argument("--json", action="store_true", help=json_help)
    u = bsub.add_parser(
        "units",
        help="latency of the norm units and attention datapaths",
        description="Measured cycles of the softmax and LayerNorm units, the SESA products and SDSA "
        "next to the figures their docstrings state. Exit 1 if any differs.",
    )
    u.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the factory model and stimulus (default %(default)s)")
    u.add_argument("--dim", type=positive_int, default=32, help="model dimension (default %(default)s)")
    u.add_argument("--heads", type=positive_int, default=2, help="attention heads (default %(default)s)")
    u.add_argument("--json", action="store_true", help=json_help)
    b.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="equispike",
        description=PROG_DESCRIPTION,
        epilog=PROG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser(
        "check",
        help="prove the SNN (summed over time) equals the integer QANN; sdt: golden == PyTorch",
        description="Build random models (or load an artifact), run the integer QANN and "
        "the time-stepped SNN to quiescence, and compare every site's settled codes and "
        "every logit. For the spike-driven transformer (--arch sdt, or an sdt artifact): run "
        "the NumPy golden model and the int64 PyTorch forward, compare the logits after every "
        "step, and check every bounded intermediate of the golden run against its width. "
        "Exit 1 on any mismatch, unsettled image, width violation or when nothing was "
        "compared; 2 on bad input.",
    )
    src = c.add_mutually_exclusive_group()
    src.add_argument(
        "--random",
        type=positive_int,
        default=None,
        metavar="N",
        help="number of random models (depth 1-4, levels 4-32, several dims); default 50",
    )
    src.add_argument("--artifact", metavar="PATH", help="check this artifact (.esa) on random images instead")
    c.add_argument("--arch", choices=("vit", "sdt"), default=None,
                   help="model family of the random models (default vit); with --artifact, the "
                   "artifact's own arch, which this must match when given")
    c.add_argument("--batch", type=positive_int, default=8, help="images per model (default %(default)s)")
    c.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of models and images (default %(default)s)")
    c.add_argument("--t-max", type=positive_int, default=2048,
                   help="step cap of a vit run; an image not settled by then counts as unsettled "
                   "(an sdt run takes its T steps; default %(default)s)")
    c.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help=THREADS_HELP.format(what="the random models (or the artifact's batches)"))
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=cmd_check)

    w = sub.add_parser(
        "widths",
        help="worst-case bounds and bit widths of an artifact, vit or sdt (SPEC §9)",
        description="Every accumulator, membrane, tracer and operator intermediate of the "
        "artifact, with its worst-case range and the signed width that holds it.",
    )
    w.add_argument("artifact", help="artifact path (.esa)")
    w.add_argument("--json", action="store_true", help="print {quantity: {lo, hi, bits}} as JSON")
    w.set_defaults(func=cmd_widths)

    r = sub.add_parser(
        "random-model",
        help="write a random calibrated integer ViT artifact",
        description="Random int8 weights, thresholds calibrated on random images; the same options "
        "give the same bytes. Written atomically.",
    )
    r.add_argument("out", help="output artifact path (.esa)")
    r.add_argument("--seed", type=nonnegative_int, default=0, help="weights and calibration seed "
                   "(default %(default)s)")
    for name, default, meaning in (
        ("image", 8, "input image side in pixels"),
        ("patch", 2, "patch side in pixels (must divide --image)"),
        ("dim", 32, "embedding dimension"),
        ("heads", 2, "attention heads (must divide --dim)"),
        ("depth", 1, "transformer blocks"),
        ("mlp-ratio", 2, "MLP hidden size = dim * ratio"),
        ("classes", 10, "output classes"),
    ):
        r.add_argument(f"--{name}", type=positive_int, default=default, help=f"{meaning} (default {default})")
    r.add_argument("--levels", type=int, choices=LEVEL_CHOICES, default=16,
                   help="levels of every quantizer site, a power of two in 4..256 (default 16)")
    r.set_defaults(func=cmd_random_model)

    _add_bench(sub)

    for modname in ("equispike.quant.commands", "equispike.rtl.synth", "equispike.sim.core.commands"):
        try:
            mod = __import__(modname, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and modname.startswith(exc.name):
                continue
            raise
        mod.register(sub)
    return p


def error_line(command: str, exc: BaseException) -> str:
    """The one line an error becomes: the subcommand, and the message (which names the field)."""
    from .model.artifact import ArtifactError

    known = (ArtifactError, ValueError, TypeError, OSError, OverflowError, KeyError)
    msg = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0] if exc.args else exc)
    if isinstance(exc, known):
        return f"equispike {command}: error: {msg}"
    return f"equispike {command}: internal error ({type(exc).__name__}): {msg}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"equispike {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every error becomes one line and exit status 2
        if os.environ.get("EQUISPIKE_TRACEBACK"):
            raise
        print(error_line(args.command, exc), file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
