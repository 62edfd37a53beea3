"""``equispike core build`` and ``equispike core run``: the compiled model as Verilog, and in simulation."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ...cli import positive_int

__all__ = ["register", "DEFAULT_ARTIFACT"]

DEFAULT_ARTIFACT = Path("runs") / "default" / "model.esa"


def _int_in(lo: int, hi: int, *, power_of_two: bool = False, unit: str = ""):
    """argparse type: an integer in ``[lo, hi]`` (a power of two if asked)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi or (power_of_two and v & (v - 1)):
            what = "a power of two" if power_of_two else "an integer"
            raise argparse.ArgumentTypeError(f"must be {what} from {lo} to {hi}{unit}, got {v}")
        return v

    return parse


_lanes = _int_in(1, 256, power_of_two=True)
_norm_units = _int_in(1, 16)
_permille = _int_in(0, 900, unit=" (per mille)")


def _init_seeds(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated seeds of the power-up values (positive integers or ``zero``)."""
    from ..build import parse_init_seeds

    try:
        seeds = parse_init_seeds(text, source="--init-seeds")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def _load(path: str):
    """The artifact at ``path``, ViT or spike-driven transformer by the ``arch`` it declares."""
    from ...model.artifact import artifact_arch, load_artifact

    p = Path(path)
    if not p.exists():
        hint = " (run `equispike demo` to train and export it)" if p == DEFAULT_ARTIFACT else ""
        raise FileNotFoundError(f"artifact {path} does not exist{hint}")
    if artifact_arch(p) == "sdt":
        from ...model.sdt import load_sdt_artifact

        return load_sdt_artifact(p)
    return load_artifact(p)


def _compile(art, lanes: int, norm_units: int):
    """``(params, program)`` of ``art`` on the smallest core of ``lanes`` lanes."""
    from ...compiler.program import compile_artifact, fit_params
    from ...compiler.sdt_program import compile_sdt, fit_sdt_params
    from ...model.sdt import SDTArtifact

    if isinstance(art, SDTArtifact):
        params = fit_sdt_params(art, lanes, norm_units=norm_units)
        return params, compile_sdt(art, params)
    params = fit_params(art, lanes, norm_units=norm_units)
    return params, compile_artifact(art, params)


def cmd_build(args: argparse.Namespace) -> int:
    """Write the core's Verilog (no trace port), memory images, listing and parameters."""
    from ...model.artifact import atomic_write_bytes
    from ...rtl.core.core import Core, lane_bits, out_rows
    from ..build import to_verilog

    art = _load(args.artifact)
    params, prog = _compile(art, args.lanes, args.norm_units)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_verilog(Core(prog, trace=False), name=args.name)
    files = {f"{args.name}.v": text, "program.lst": prog.listing()}
    for mem, rows in prog.images.items():
        width = lane_bits(params, mem)
        lines = []
        for r in rows:
            w = 0
            for i, v in enumerate(r):
                w |= (int(v) & ((1 << width) - 1)) << (i * width)
            lines.append(f"{w:0{-(-width * params.lanes // 4)}x}")
        files[f"mem_{mem}.hex"] = "\n".join(lines) + "\n"
    summary = {
        "artifact": str(args.artifact),
        "top": args.name,
        "params": asdict(params),
        "instructions": len(prog.instrs),
        "input_rows": prog.input_rows,
        "output_beats": out_rows(params, prog.logits_rows),
        "memories": {m: int(a.shape[0]) for m, a in prog.images.items()},
        "regions": {k: {"mem": r.mem, "base": r.base, "rows": r.rows, "note": r.note}
                    for k, r in prog.regions.items()},
        "widths": {k: {"needed": a, "available": b} for k, (a, b) in prog.widths.items()},
        "counters": {str(k): v for k, v in prog.counters.items()},
    }
    files["params.json"] = json.dumps(summary, indent=1) + "\n"
    for name, body in files.items():
        atomic_write_bytes(out / name, body.encode())
    print(json.dumps({"out": str(out), "files": sorted(files), "lanes": params.lanes,
                      "instructions": len(prog.instrs), "memories": summary["memories"]}, indent=1))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Verilator run on the digits test images, compared with the golden model image by image."""
    from ...quant.data import load_split
    from .harness import HarnessError
    from .run import default_build_dir, run_core

    art = _load(args.artifact)
    split = load_split()
    if args.images > len(split.y_test):
        raise ValueError(f"--images {args.images}: the digits test split has {len(split.y_test)} images")
    d = art.dims
    if (d.channels, d.image) != (1, 8):
        raise ValueError(
            f"core run feeds the digits test images (1×8×8); the artifact takes {d.channels}×{d.image}"
            f"×{d.image}"
        )
    x = split.x_test[: args.images]
    y = split.y_test[: args.images]
    bd = (Path(args.build_dir) if args.build_dir
          else default_build_dir(args.artifact, args.lanes, args.norm_units))

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        rep = run_core(art, x, labels=y, lanes=args.lanes, norm_units=args.norm_units, build_dir=bd,
                       batch=args.batch,
                       seed=args.seed, init_seeds=args.init_seeds, idle_permille=args.idle,
                       stall_permille=args.stall, progress=progress)
    except HarnessError as exc:
        print(f"equispike core run: failed: {exc}", file=sys.stderr)
        return 1
    d = rep.as_dict()
    d.pop("params")
    d["ok"] = rep.ok
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        print(f"{rep.images} images, P = {rep.lanes}: {rep.spikes_compared} spikes in "
              f"{rep.steps_compared} steps compared, {rep.mismatches} mismatches; logits equal "
              f"{rep.logits_equal}, settle step equal {rep.settle_equal}, energy counts equal "
              f"{rep.energy_equal}")
        print(f"accuracy {rep.accuracy:.4f} (integer QANN {rep.qann_accuracy:.4f})")
        print(f"cycles/image {rep.cycles_per_image:.0f} (ideal {rep.ideal_cycles_per_image:.0f}, "
              f"utilization {rep.utilization:.1%})")
        print("cycles by unit per image: " + ", ".join(f"{k} {v:.0f}" for k, v in rep.cycles_by_unit.items()))
    if not rep.ok:
        if rep.first_mismatch:
            print(f"equispike core run: first mismatch: {rep.first_mismatch}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    """Add ``core build`` and ``core run`` to an argparse subparsers object."""
    c = subparsers.add_parser(
        "core",
        help="the core: a whole model in RTL (Verilog build, Verilator run against the golden model)",
        description="The core runs a compiled artifact: one programmable machine whose logic is set "
        "by its lanes and memory sizes, never by the model.",
    )
    sub = c.add_subparsers(dest="core_command", metavar="ACTION", required=True)
    b = sub.add_parser(
        "build",
        help="compile an artifact and write the core's Verilog, memory images, listing, parameters",
        description="Compile ARTIFACT for a core of --lanes lanes (memories sized to the model) and "
        "write OUT/<name>.v (no trace port: for synthesis), OUT/mem_<X>.hex (the memory images, "
        "one row per line), OUT/program.lst and OUT/params.json. Files are written atomically.",
    )
    b.add_argument("artifact", help="artifact path (.esa)")
    b.add_argument("--lanes", type=_lanes, default=64, help="lanes P (default %(default)s)")
    b.add_argument("--norm-units", type=_norm_units, default=1, help="LayerNorm and softmax row units "
                   "each, working on rows in turn: more logic, fewer cycles (default %(default)s)")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--name", default="equispike_core", help="Verilog top module (default %(default)s)")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser(
        "run",
        help="run the digits test images on the core under Verilator, compared with the golden model",
        description="Build the core for ARTIFACT under Verilator (once per model and lanes, in "
        "build/core/) and run the first N digits test images; every spike of every site of every "
        "step, the logits, the settle step and the event counts are compared with the golden SNN. "
        "Exit 1 on any mismatch.",
    )
    r.add_argument("--artifact", default=str(DEFAULT_ARTIFACT), help="artifact (default %(default)s)")
    r.add_argument("--images", type=positive_int, default=20, help="test images (default %(default)s)")
    r.add_argument("--lanes", type=_lanes, default=64, help="lanes P (default %(default)s)")
    r.add_argument("--norm-units", type=_norm_units, default=1, help="LayerNorm and softmax row units "
                   "each, working on rows in turn: more logic, fewer cycles (default %(default)s)")
    r.add_argument("--batch", type=positive_int, default=20, help="images per simulator call "
                   "(default %(default)s)")
    r.add_argument("--build-dir", default=None, help="Verilator build directory "
                   "(default build/core/<artifact>-p<lanes>-n<norm units>)")
    r.add_argument("--idle", type=_permille, default=0, help="input idle cycles, per mille "
                   "(default %(default)s)")
    r.add_argument("--stall", type=_permille, default=0, help="output back-pressure cycles, per mille "
                   "(default %(default)s)")
    r.add_argument("--seed", type=positive_int, default=1, help="stimulus seed (default %(default)s)")
    r.add_argument("--init-seeds", type=_init_seeds, default=None, metavar="SEEDS",
                   help="power-up values, one run of every image per seed: comma-separated positive "
                   "integers (random values from that Verilator seed) or 'zero' (default "
                   "$EQUISPIKE_INIT_SEEDS, else 1)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=cmd_run)
