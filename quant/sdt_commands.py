"""``equispike train|eval|demo --arch sdt``: the spike-driven transformer on digits.

``train`` writes ``OUT_DIR/model.esa`` (default ``runs/sdt``); ``eval`` runs the artifact's integers
in int64 PyTorch (:func:`~equispike.quant.sdt.forward_int`) and in the golden model
(:func:`~equispike.model.sdt.run_sdt`) on the test split and reports both accuracies, their agreement
(the fraction of images with equal logits), the float accuracy recorded at training, accuracy per
time step and the SPEC §10 energy; ``demo`` trains (or reuses a run of the same configuration),
then evaluates. Exit status: 0 ok, 1 PyTorch and golden logits differ on some image, 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SDT_RUN",
    "sdt_configs",
    "evaluate_sdt",
    "sdt_summary_lines",
    "do_train_sdt",
    "do_eval_sdt",
    "do_demo_sdt",
]

DEFAULT_SDT_RUN = Path("runs") / "sdt"
EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


def _pick(args, name: str, default):
    v = getattr(args, name, None)
    return default if v is None else v


def sdt_configs(args):
    """Model and training configuration from parsed arguments (None means the sdt default)."""
    from .sdt import SDTConfig
    from .sdt_train import SDTTrainConfig

    m, t = SDTConfig(), SDTTrainConfig()
    mc = SDTConfig(
        patch=_pick(args, "patch", m.patch),
        dim=_pick(args, "dim", m.dim),
        depth=_pick(args, "depth", m.depth),
        heads=_pick(args, "heads", m.heads),
        mlp_ratio=_pick(args, "mlp_ratio", m.mlp_ratio),
        attention=_pick(args, "attention", m.attention),
        timesteps=_pick(args, "timesteps", m.timesteps),
    )
    tc = SDTTrainConfig(
        seed=_pick(args, "seed", t.seed),
        split_seed=_pick(args, "split_seed", t.split_seed),
        batch_size=_pick(args, "batch_size", t.batch_size),
        float_epochs=_pick(args, "float_epochs", t.float_epochs),
        float_lr=_pick(args, "float_lr", t.float_lr),
        int_epochs=_pick(args, "qat_epochs", t.int_epochs),
        int_lr=_pick(args, "qat_lr", t.int_lr),
        kd_weight=_pick(args, "kd_weight", t.kd_weight),
    )
    return mc, tc


def _errors():
    from ..model.artifact import ArtifactError

    return (ArtifactError, ValueError, TypeError, OverflowError, OSError)


def _stats(a: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(a)), "min": float(np.min(a)), "max": float(np.max(a))}


def evaluate_sdt(
    artifact: str | Path, timesteps: int | None = None, limit: int | None = None, chunk: int = 120
) -> dict:
    """Accuracies, agreement and energy of an sdt artifact on its digits test split.

    Parameters
    ----------
    artifact:
        Path of an ``arch: "sdt"`` artifact.
    timesteps:
        ``T`` of the runs; the artifact's when None.
    limit:
        Only the first ``limit`` test images.
    chunk:
        Images per golden-model batch (bounds memory).
    """
    from ..model.energy import AC_PJ, MAC_PJ
    from ..model.sdt import load_sdt_artifact, run_sdt, sdt_dense_macs
    from .data import load_split
    from .sdt import forward_int

    art = load_sdt_artifact(artifact)
    T = art.timesteps if timesteps is None else timesteps
    tc = art.meta.get("train_config", {})
    split_seed = tc.get("split_seed", 0) if isinstance(tc, dict) else 0
    fraction = tc.get("test_fraction", 0.2) if isinstance(tc, dict) else 0.2
    data = load_split(split_seed, fraction)
    x, y = data.x_test, data.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    golden, step, macs, acs = [], [], [], []
    torch_logits = []
    for i in range(0, len(y), chunk):
        r = run_sdt(art, x[i : i + chunk], T)
        golden.append(r.logits)
        step.append(r.step_logits)
        macs.append(r.macs)
        acs.append(r.acs)
        torch_logits.append(forward_int(art, x[i : i + chunk], T).numpy())
    g = np.concatenate(golden)
    p = np.concatenate(torch_logits)
    sl = np.concatenate(step, axis=1)
    macs_a, acs_a = np.concatenate(macs), np.concatenate(acs)
    energy = MAC_PJ * macs_a + AC_PJ * acs_a
    dense = sdt_dense_macs(art.dims, T, art.attention)
    float_acc = art.meta.get("float_test_acc")
    return {
        "arch": "sdt",
        "artifact": str(artifact),
        "images": int(len(y)),
        "split": data.describe(),
        "timesteps": T,
        "attention": art.attention,
        "dims": {k: getattr(art.dims, k) for k in ("patch", "dim", "depth", "heads", "mlp_dim")},
        "pytorch_int_acc": float((p.argmax(1) == y).mean()),
        "golden_acc": float((g.argmax(1) == y).mean()),
        "agreement": float((p == g).all(axis=1).mean()),
        "float_acc": float(float_acc) if isinstance(float_acc, int | float) else None,
        "accuracy_vs_T": [[t + 1, float((sl[t].argmax(1) == y).mean())] for t in range(T)],
        "macs_per_image": _stats(macs_a),
        "acs_per_image": _stats(acs_a),
        "energy_pj_per_image": _stats(energy),
        "dense_macs": dense,
        "dense_energy_pj": MAC_PJ * dense,
    }


def sdt_summary_lines(r: dict) -> list[str]:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f} %"

    return [
        f"test images                  {r['images']} ({r['split']})",
        f"model                        sdt {r['dims']}, {r['attention']}, T = {r['timesteps']}",
        f"float accuracy (training)    {pct(r['float_acc'])}",
        f"PyTorch integer accuracy     {pct(r['pytorch_int_acc'])}",
        f"golden accuracy              {pct(r['golden_acc'])}",
        f"PyTorch == golden (logits)   {100 * r['agreement']:.2f} % of images",
        "accuracy vs T                " + ", ".join(f"T={t}: {100 * a:.1f}%" for t, a in r["accuracy_vs_T"]),
        f"MACs per image (mean)        {r['macs_per_image']['mean']:.0f}  (dense: {r['dense_macs']})",
        f"ACs per image (mean)         {r['acs_per_image']['mean']:.0f}",
        f"energy per image (mean)      {r['energy_pj_per_image']['mean'] / 1e3:.1f} nJ  "
        f"(dense MACs: {r['dense_energy_pj'] / 1e3:.1f} nJ)",
    ]


def _write_json(r: dict, dest: str) -> None:
    from ..model.artifact import atomic_write_bytes

    text = json.dumps(r, indent=1, sort_keys=True)
    if dest == "-":
        print(text)
    else:
        atomic_write_bytes(dest, (text + "\n").encode())


def _threads(args) -> None:
    import torch

    torch.set_num_threads(max(1, getattr(args, "threads", 1) or 1))


def _train(args, out_dir: Path) -> Path:
    from ..model.sdt import save_sdt_artifact
    from .sdt_train import train_sdt

    mc, tc = sdt_configs(args)
    art, s = train_sdt(mc, tc, quiet=args.quiet)
    path = save_sdt_artifact(art, out_dir / "model.esa")
    print(f"float test accuracy            {s['float_test_acc']:.4f}")
    print(f"integer test accuracy (T={mc.timesteps})    {s['int_test_acc']:.4f}")
    print(
        f"wall time                      {s['float_seconds'] + s['int_seconds']:.1f} s "
        f"(float {s['float_seconds']:.1f} s, integer-aware {s['int_seconds']:.1f} s)"
    )
    print(f"artifact                       {path}")
    return path


def do_train_sdt(args) -> int:
    _threads(args)
    try:
        _train(args, Path(args.out_dir or DEFAULT_SDT_RUN))
    except _errors() as exc:
        print(f"equispike train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def do_eval_sdt(args) -> int:
    _threads(args)
    path = Path(args.artifact or DEFAULT_SDT_RUN / "model.esa")
    try:
        r = evaluate_sdt(path, getattr(args, "timesteps", None), args.limit)
    except _errors() as exc:
        print(f"equispike eval: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json is not None:
        _write_json(r, args.json)
    if args.json != "-":
        print("\n".join(sdt_summary_lines(r)))
    return EXIT_OK if r["agreement"] == 1.0 else EXIT_MISMATCH


def do_demo_sdt(args) -> int:
    from ..model.sdt import load_sdt_artifact

    _threads(args)
    out_dir = Path(args.out_dir or DEFAULT_SDT_RUN)
    path = out_dir / "model.esa"
    try:
        mc, tc = sdt_configs(args)
        cached = False
        if path.is_file() and not args.retrain:
            try:
                meta = load_sdt_artifact(path).meta
                cached = meta.get("model_config") == mc.to_dict() and meta.get("train_config") == tc.to_dict()
            except _errors() as exc:
                print(f"[demo] cached {path} not usable ({exc}); retraining", file=sys.stderr)
        if cached:
            print(f"[demo] reusing cached run {path}", file=sys.stderr)
        else:
            _train(args, out_dir)
        r = evaluate_sdt(path, None, args.limit)
    except _errors() as exc:
        print(f"equispike demo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _write_json(r, str(out_dir / "eval.json"))
    print("\n".join(sdt_summary_lines(r)))
    return EXIT_OK if r["agreement"] == 1.0 else EXIT_MISMATCH
