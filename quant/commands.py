"""``equispike`` subcommands of the quantization side: ``train``, ``export``, ``eval``, ``demo``.

``cli.py`` calls :func:`register` with its ``add_subparsers()`` object; every subcommand sets
``func(args) -> int``, the exit status of the whole command line: 0 ok, 1 SNN != QANN, 2 bad input
(one line on stderr). Default paths live under ``runs/`` (gitignored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..model.neurons import LEVEL_CHOICES

__all__ = ["register", "DEFAULT_RUN", "EXIT_OK", "EXIT_MISMATCH", "EXIT_BAD_INPUT"]

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2  # the convention of cli.py

DEFAULT_RUN = Path("runs") / "default"


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    return parse


_positive = _int_at_least(1)
_nonnegative = _int_at_least(0)


# --------------------------------------------------------------------------------------------------
# argument groups
# --------------------------------------------------------------------------------------------------
def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .qvit import ViTConfig
    from .sdt import SDTConfig

    d = ViTConfig()
    g = p.add_argument_group("model (8x8 digits; --levels and --residual-bits apply to vit only)")
    g.add_argument("--patch", type=_positive, default=d.patch, help="patch size (default %(default)s: "
                   "16 patches + class token = 17 tokens)")
    g.add_argument("--dim", type=_positive, default=d.dim, help="embedding dimension (default %(default)s)")
    g.add_argument("--depth", type=_positive, default=None,
                   help=f"transformer blocks (default {d.depth}; sdt {SDTConfig().depth})")
    g.add_argument("--heads", type=_positive, default=d.heads, help="attention heads (default %(default)s)")
    g.add_argument("--mlp-ratio", type=_positive, default=d.mlp_ratio,
                   help="MLP hidden = dim * ratio (default %(default)s)")
    g.add_argument("--levels", type=int, default=d.levels, choices=LEVEL_CHOICES,
                   help="quantization levels of every activation site, a power of two in 4..256 "
                        "(default %(default)s)")
    g.add_argument("--residual-bits", type=int, default=d.residual_bits,
                   help="R: residual stream unit 2^-R, mirrored in QAT and used at export "
                        "(default %(default)s)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .sdt_train import SDTTrainConfig
    from .train import TrainConfig

    d, e = TrainConfig(), SDTTrainConfig()
    g = p.add_argument_group("training (defaults: vit / sdt)")
    g.add_argument("--seed", type=int, default=None, help=f"training seed (default {d.seed})")
    g.add_argument("--split-seed", type=int, default=None,
                   help=f"seed of the stratified 80/20 train/test split (default {d.split_seed})")
    g.add_argument("--float-epochs", type=_nonnegative, default=None,
                   help=f"float pre-training epochs (default {d.float_epochs} / {e.float_epochs})")
    g.add_argument("--qat-epochs", type=_nonnegative, default=None,
                   help=f"QAT (sdt: integer-aware) fine-tuning epochs (default {d.qat_epochs} / "
                        f"{e.int_epochs})")
    g.add_argument("--batch-size", type=_positive, default=None,
                   help=f"training images per optimizer step (default {d.batch_size})")
    g.add_argument("--float-lr", type=float, default=None,
                   help=f"learning rate of float pre-training (default {d.float_lr} / {e.float_lr})")
    g.add_argument("--qat-lr", type=float, default=None,
                   help=f"learning rate of QAT fine-tuning (default {d.qat_lr} / {e.int_lr})")
    g.add_argument("--kd-weight", type=float, default=None,
                   help=f"weight of distillation from the float model during QAT (default {d.kd_weight})")
    g.add_argument("--no-reuse-float", action="store_true",
                   help="retrain the float model even if a matching float.pt exists (vit)")


def _add_arch_args(p: argparse.ArgumentParser, detect: bool = False) -> None:
    from .sdt import SDTConfig

    d = SDTConfig()
    unset = argparse.SUPPRESS if detect else None  # eval's help formatter would print "None"
    p.add_argument("--arch", choices=("vit", "sdt"), default=unset,
                   help="vit: the converted ViT (SPEC section 7); sdt: the spike-driven transformer "
                        "(SPEC section 8, default run directory runs/sdt) "
                        + ("(default: the artifact's own)" if detect else "(default vit)"))
    g = p.add_argument_group("spike-driven transformer (--arch sdt)")
    g.add_argument("--timesteps", type=_positive, default=unset,
                   help="time steps T" + (" (default: the artifact's)" if detect else
                                          f" (default {d.timesteps})"))
    if not detect:
        g.add_argument("--attention", choices=("sdsa3", "sdsa1"), default=None,
                       help=f"spike-driven self-attention variant (default {d.attention})")


def _vit_defaults(args) -> None:
    """Fill the options left unset with the ViT defaults; sdt-only options are an error."""
    from .train import TrainConfig

    for name in ("timesteps", "attention"):
        if getattr(args, name, None) is not None:
            raise ValueError(f"--{name} applies to --arch sdt only")

    d = TrainConfig()
    for name, key in (("seed", "seed"), ("split_seed", "split_seed"), ("float_epochs", "float_epochs"),
                      ("qat_epochs", "qat_epochs"), ("batch_size", "batch_size"), ("float_lr", "float_lr"),
                      ("qat_lr", "qat_lr"), ("kd_weight", "kd_weight")):
        if getattr(args, name, None) is None:
            setattr(args, name, getattr(d, key))
    if getattr(args, "depth", None) is None:
        from .qvit import ViTConfig

        args.depth = ViTConfig().depth
    if getattr(args, "out_dir", "") is None:
        args.out_dir = str(DEFAULT_RUN)
    if getattr(args, "artifact", "") is None:
        args.artifact = str(DEFAULT_RUN / "model.esa")


def _add_runtime_args(p: argparse.ArgumentParser, golden: bool = False) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda (untested)")
    if golden:  # the golden SNN over the test images is the long part: processes, one core each
        g.add_argument("--threads", type=_positive, default=1, metavar="N",
                       help="vit: N worker processes, one core each, share the golden SNN's test "
                            "images (chunks of 64, merged in order: the results are the same for "
                            "every N, only the timings differ); torch uses N threads. sdt: torch "
                            "CPU threads (default %(default)s)")
    else:
        g.add_argument("--threads", type=_positive, default=1,
                       help="torch CPU threads (default %(default)s: fastest for this tiny model on "
                            "a shared 2-core machine)")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _configs(args):
    from .qvit import ViTConfig
    from .train import TrainConfig

    mc = ViTConfig(patch=args.patch, dim=args.dim, depth=args.depth, heads=args.heads,
                   mlp_ratio=args.mlp_ratio, levels=args.levels, residual_bits=args.residual_bits)
    tc = TrainConfig(seed=args.seed, split_seed=args.split_seed, float_epochs=args.float_epochs,
                     qat_epochs=args.qat_epochs, batch_size=args.batch_size, float_lr=args.float_lr,
                     qat_lr=args.qat_lr, kd_weight=args.kd_weight)
    return mc, tc


def _threads(args) -> None:
    import torch

    torch.set_num_threads(max(1, args.threads))


def _errors():
    from ..model.artifact import ArtifactError
    from .train import CheckpointError

    return (ArtifactError, CheckpointError, ValueError, TypeError, OverflowError, OSError)


# --------------------------------------------------------------------------------------------------
# actions
# --------------------------------------------------------------------------------------------------
def do_train(args) -> int:
    from .train import train_all

    if args.arch == "sdt":
        from .sdt_commands import do_train_sdt

        return do_train_sdt(args)
    try:
        _vit_defaults(args)
    except ValueError as exc:
        print(f"equispike train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _threads(args)
    try:
        mc, tc = _configs(args)
        summary = train_all(mc, tc, args.out_dir, device=args.device, quiet=args.quiet,
                            reuse_float=not args.no_reuse_float)
    except _errors() as exc:
        print(f"equispike train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"float test accuracy      {summary['float_test_acc']:.4f}")
    print(f"fake-quant test accuracy {summary['fake_quant_test_acc']:.4f}")
    print(f"wall time                {summary['train_seconds']:.1f} s "
          f"(float {summary['float_seconds']:.1f} s, QAT {summary['qat_seconds']:.1f} s)")
    print(f"checkpoints              {summary['float_checkpoint']}, {summary['qat_checkpoint']}")
    return 0


def export_checkpoint(checkpoint: str | Path, out: str | Path, residual_bits: int | None = None
                      ) -> Path:
    from ..model.artifact import save_artifact
    from .export import export_artifact
    from .train import load_checkpoint

    model, blob = load_checkpoint(checkpoint, expect_stage="qat")
    meta = {"checkpoint": str(checkpoint), "train_config": blob["train_config"],
            "train_meta": blob.get("meta", {})}
    art = export_artifact(model, residual_bits=residual_bits, meta=meta)
    return save_artifact(art, out)


def do_export(args) -> int:
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.with_name("model.esa")
    try:
        path = export_checkpoint(ckpt, out, args.residual_bits)
    except _errors() as exc:
        print(f"equispike export: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {path}")
    return 0


def evaluate_paths(artifact: str | Path, checkpoint: str | Path | None,
                   float_checkpoint: str | Path | None, t_max: int, limit: int | None,
                   quiet: bool = False, threads: int = 1) -> dict:
    from ..model.artifact import load_artifact
    from .data import load_split
    from .evaluate import evaluate_artifact
    from .train import Progress, TrainConfig, load_checkpoint

    art = load_artifact(artifact)
    tcd = art.meta.get("train_config")
    tc = TrainConfig.from_dict(tcd) if isinstance(tcd, dict) else TrainConfig()
    data = load_split(tc.split_seed, tc.test_fraction)
    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    fm = qm = None
    if checkpoint and Path(checkpoint).is_file():
        qm, _ = load_checkpoint(checkpoint, expect_stage="qat")
    if float_checkpoint and Path(float_checkpoint).is_file():
        fm, _ = load_checkpoint(float_checkpoint, expect_stage="float")
    prog = Progress("snn", len(y), quiet=quiet)
    res = evaluate_artifact(art, x, y, t_max=t_max, float_model=fm, qat_model=qm,
                            progress=lambda i, n: prog.update(i), threads=threads)
    res["artifact"] = str(artifact)
    res["split"] = data.describe()
    res["residual_R"] = art.residual_R
    res["levels"] = art.sites["norm"].levels
    res["dims"] = {k: getattr(art.dims, k) for k in ("patch", "dim", "depth", "heads", "mlp_dim")}
    res["train_seconds"] = art.meta.get("train_meta", {}).get("float_seconds", 0.0) + \
        art.meta.get("train_meta", {}).get("qat_seconds", 0.0)
    return res


def summary_lines(r: dict) -> list[str]:
    def pct(k):
        return f"{100 * r[k]:.2f} %" if k in r else "n/a"

    st = r["settle_step"] or {}
    lines = [
        f"test images                 {r['images']} ({r['split']})",
        f"model                       {r['dims']}, levels {r['levels']}, R {r['residual_R']}",
        f"float accuracy              {pct('float_acc')}",
        f"fake-quant accuracy         {pct('fake_quant_acc')}",
        f"integer QANN accuracy       {pct('qann_acc')}",
        f"SNN accuracy                {pct('snn_acc')}",
        f"SNN == QANN (exact logits)  {100 * r['snn_equals_qann_fraction']:.2f} % of images",
        f"unsettled at t_max={r['t_max']:<5}   {r['unsettled_images']}",
        f"settle step min/median/max  {st.get('min', 'n/a')} / {st.get('median', 'n/a')} / "
        f"{st.get('max', 'n/a')}",
        f"ACs per image (mean)        {r['acs_per_image']['mean']:.0f}",
        f"MACs per image (mean)       {r['macs_per_image']['mean']:.0f}  "
        f"(QANN dense: {r['qann_dense_macs']})",
        f"energy per image (mean)     {r['energy_pj_per_image']['mean'] / 1e3:.1f} nJ  "
        f"(QANN dense MACs: {r['qann_dense_energy_pj'] / 1e3:.1f} nJ)",
        "accuracy vs T               " + ", ".join(f"T={T}: {100 * a:.1f}%"
                                                    for T, a in r["accuracy_vs_T"]),
    ]
    return lines


def _write_json(r: dict, dest: str) -> None:
    from ..model.artifact import atomic_write_bytes

    text = json.dumps(r, indent=1, sort_keys=True)
    if dest == "-":
        print(text)
    else:
        atomic_write_bytes(dest, (text + "\n").encode())


def do_eval(args) -> int:
    for name in ("artifact", "arch", "timesteps"):
        if not hasattr(args, name):
            setattr(args, name, None)
    arch = args.arch
    if arch is None and args.artifact is not None:
        from ..model.artifact import artifact_arch

        arch = artifact_arch(args.artifact)
    if arch == "sdt":
        from .sdt_commands import do_eval_sdt

        return do_eval_sdt(args)
    try:
        _vit_defaults(args)
    except ValueError as exc:
        print(f"equispike eval: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _threads(args)
    art = Path(args.artifact)
    ckpt = args.checkpoint or art.with_name("qat.pt")
    fck = args.float_checkpoint or art.with_name("float.pt")
    try:
        r = evaluate_paths(art, ckpt, fck, args.t_max, args.limit, quiet=args.quiet,
                           threads=args.threads)
    except _errors() as exc:
        print(f"equispike eval: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json is not None:
        _write_json(r, args.json)
    if args.json != "-":
        print("\n".join(summary_lines(r)))
    return EXIT_OK if r["snn_equals_qann_fraction"] == 1.0 else EXIT_MISMATCH


def do_demo(args) -> int:
    from .train import CheckpointError, TrainConfig, load_checkpoint, train_all

    if args.arch == "sdt":
        from .sdt_commands import do_demo_sdt

        return do_demo_sdt(args)
    try:
        _vit_defaults(args)
    except ValueError as exc:
        print(f"equispike demo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _threads(args)
    out_dir = Path(args.out_dir)
    try:
        mc, tc = _configs(args)
        qpath = out_dir / "qat.pt"
        cached = False
        if qpath.is_file() and not args.retrain:
            try:
                _, blob = load_checkpoint(qpath, expect_stage="qat", expect_config=mc)
                cached = TrainConfig.from_dict(blob["train_config"]) == tc
            except CheckpointError as exc:
                print(f"[demo] cached {qpath} not usable ({exc}); retraining", file=sys.stderr)
        if cached:
            print(f"[demo] reusing cached run {qpath}", file=sys.stderr)
        else:
            s = train_all(mc, tc, out_dir, device=args.device, quiet=args.quiet)
            print(f"[demo] trained in {s['train_seconds']:.1f} s", file=sys.stderr)
        art = export_checkpoint(qpath, out_dir / "model.esa")
        print(f"[demo] exported {art}", file=sys.stderr)
        r = evaluate_paths(art, qpath, out_dir / "float.pt", args.t_max, args.limit,
                           quiet=args.quiet, threads=args.threads)
    except _errors() as exc:
        print(f"equispike demo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _write_json(r, str(out_dir / "eval.json"))
    print("\n".join(summary_lines(r)))
    return EXIT_OK if r["snn_equals_qann_fraction"] == 1.0 else EXIT_MISMATCH


# --------------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add ``train``, ``export``, ``eval`` and ``demo`` to an argparse subparsers object."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser(
        "train", help="float pre-training + QAT of the digits ViT (or --arch sdt)",
        description="Train the float ViT on sklearn digits (stratified 80/20 split), then QAT "
                    "fine-tune with LSQ sites and int8 weights. Writes OUT_DIR/float.pt and "
                    "OUT_DIR/qat.pt. A float.pt with the same configuration is reused. With --arch "
                    "sdt: the spike-driven transformer, float then integer-aware training, written "
                    "as the integer artifact OUT_DIR/model.esa (default runs/sdt).",
    )
    p.add_argument("--out-dir", default=None,
                   help=f"run directory (default {DEFAULT_RUN}; sdt: runs/sdt)")
    _add_arch_args(p)
    _add_model_args(p)
    _add_train_args(p)
    _add_runtime_args(p)
    p.set_defaults(func=do_train)

    p = subparsers.add_parser(
        "export", help="export a QAT checkpoint to an integer artifact (.esa)",
        description="Convert a QAT checkpoint to the integer ViTArtifact of SPEC sections 3-7 "
                    "(thresholds, int8 weights, integer biases, residual multipliers, softmax and "
                    "LayerNorm constants) and write it atomically.", formatter_class=fmt,
    )
    p.add_argument("--checkpoint", default=str(DEFAULT_RUN / "qat.pt"), help="QAT checkpoint")
    p.add_argument("--out", default=None, help="artifact path (default: model.esa next to the "
                   "checkpoint)")
    p.add_argument("--residual-bits", type=int, default=None,
                   help="R: the residual stream is an integer in units of 2^-R (default: the R the "
                        "model was trained with, --residual-bits of train)")
    p.set_defaults(func=do_export)

    p = subparsers.add_parser(
        "eval", help="accuracy of float / fake-quant / integer QANN / SNN on the test split",
        description="Evaluate an artifact on the digits test split: integer QANN and the SNN run "
                    "to quiescence (golden model), exact SNN == QANN check, settle steps, "
                    "ACs/MACs/energy, accuracy vs time step. Float and fake-quant accuracies come "
                    "from float.pt / qat.pt next to the artifact when present. Exit status 1 if any "
                    "SNN logits differ from the QANN, 2 on bad input. An sdt artifact (spike-driven "
                    "transformer) reports the PyTorch integer and golden accuracies, their agreement "
                    "(images with equal logits; exit 1 below 100 %%) and the float accuracy recorded "
                    "at training.", formatter_class=fmt,
    )
    p.add_argument("--artifact", default=argparse.SUPPRESS,
                   help=f"artifact to evaluate (default {DEFAULT_RUN / 'model.esa'}; with --arch sdt "
                        "runs/sdt/model.esa)")
    _add_arch_args(p, detect=True)
    p.add_argument("--checkpoint", default=None, help="QAT checkpoint (default: qat.pt next to "
                   "the artifact)")
    p.add_argument("--float-checkpoint", default=None, help="float checkpoint (default: float.pt "
                   "next to the artifact)")
    p.add_argument("--t-max", type=_positive, default=2048, help="SNN step cap")
    p.add_argument("--limit", type=_positive, default=None, help="only the first N test images")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="write the results as JSON to PATH (or stdout when PATH is omitted)")
    _add_runtime_args(p, golden=True)
    p.set_defaults(func=do_eval)

    p = subparsers.add_parser(
        "demo", help="train (or reuse runs/) -> export -> eval -> summary",
        description="End to end on digits: train the default configuration unless OUT_DIR holds a "
                    "QAT checkpoint of the same configuration, export it, run the integer QANN and "
                    "the SNN on the test split and print a summary (also OUT_DIR/eval.json). With "
                    "--arch sdt: the spike-driven transformer in runs/sdt.",
    )
    p.add_argument("--out-dir", default=None,
                   help=f"run directory (default {DEFAULT_RUN}; sdt: runs/sdt)")
    p.add_argument("--retrain", action="store_true", help="ignore a cached run")
    _add_arch_args(p)
    p.add_argument("--t-max", type=_positive, default=2048, help="SNN step cap (default %(default)s)")
    p.add_argument("--limit", type=_positive, default=None, help="only the first N test images")
    _add_model_args(p)
    _add_train_args(p)
    _add_runtime_args(p, golden=True)
    p.set_defaults(func=do_demo)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m equispike.quant.commands``) until cli.py wires it."""
    ap = argparse.ArgumentParser(prog="equispike")
    sub = ap.add_subparsers(dest="command", required=True)
    register(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
