"""Training smoke test (tiny config), determinism, the data split, checkpoint errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equispike.quant.data import augment_shift, load_split
from equispike.quant.qvit import QViT, ViTConfig
from equispike.quant.train import (
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    save_checkpoint,
    train_all,
)

torch.set_num_threads(1)

TINY = ViTConfig(dim=16, depth=1, heads=2, mlp_ratio=2, levels=16)
TINY_TC = TrainConfig(float_epochs=4, qat_epochs=1, batch_size=64, float_lr=5e-3, warmup_epochs=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    summary = train_all(TINY, TINY_TC, d, quiet=True)
    return d, summary


def test_split_is_fixed_and_stratified():
    a, b = load_split(), load_split()
    assert a.x_train.shape == (1437, 8, 8) and a.x_test.shape == (360, 8, 8)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert a.x_train.dtype == np.int64 and a.x_train.min() == 0 and a.x_train.max() == 16
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    c = load_split(split_seed=1)
    assert not np.array_equal(a.x_test, c.x_test)


def test_augment_shift_keeps_integer_codes():
    x = torch.as_tensor(load_split().x_train[:32])
    y = augment_shift(x, torch.Generator().manual_seed(0), 1)
    assert y.dtype == x.dtype and y.shape == x.shape and int(y.min()) >= 0 and int(y.max()) <= 16
    assert not torch.equal(x, y)
    # every output is the input translated by at most one pixel
    for i in range(4):
        xp = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        assert any(torch.equal(y[i], xp[dy : dy + 8, dx : dx + 8])
                   for dy in range(3) for dx in range(3)), f"image {i} is not a shift"


def test_training_smoke(run):
    d, s = run
    assert (d / "float.pt").is_file() and (d / "qat.pt").is_file()
    assert 0.0 <= s["fake_quant_test_acc"] <= 1.0
    fm, fblob = load_checkpoint(d / "float.pt", expect_stage="float")
    qm, qblob = load_checkpoint(d / "qat.pt", expect_stage="qat", expect_config=TINY)
    hist = fblob["history"]
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"] - 0.02, hist  # it learns
    assert qm.quantized and not fm.quantized
    assert all(bool(q.initialized) for q in qm.sites().values())
    assert qblob["meta"]["fake_quant_test_acc"] == s["fake_quant_test_acc"]


def test_training_is_deterministic(run, tmp_path):
    d, _ = run
    train_all(TINY, TINY_TC, tmp_path, quiet=True, reuse_float=False)
    for name in ("float.pt", "qat.pt"):
        a = torch.load(d / name, weights_only=True)["state_dict"]
        b = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs between two seeded runs"


def test_checkpoint_errors(run, tmp_path):
    d, _ = run
    good = d / "qat.pt"
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(trunc)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an equispike"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="expected a 'float' checkpoint"):
        load_checkpoint(good, expect_stage="float")
    other = ViTConfig(dim=32, depth=1, heads=2, levels=16)
    with pytest.raises(CheckpointError, match=r"model_config mismatch.*dim"):
        load_checkpoint(good, expect_config=other)

    def tampered(edit, name):
        blob = torch.load(good, weights_only=True)
        edit(blob)
        p = tmp_path / name
        torch.save(blob, p)
        return p

    p = tampered(lambda b: b["state_dict"].__setitem__("head.weight", torch.zeros(3, 3)), "shape.pt")
    with pytest.raises(CheckpointError, match=r"head\.weight.*shape"):
        load_checkpoint(p)
    p = tampered(lambda b: b["state_dict"].pop("blocks.0.qkv.bias"), "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing \['blocks\.0\.qkv\.bias'\]"):
        load_checkpoint(p)
    p = tampered(lambda b: b["model_config"].__setitem__("dim", 24), "cfg.pt")
    with pytest.raises(CheckpointError, match="does not match model_config|shape"):
        load_checkpoint(p)
    p = tampered(lambda b: b["state_dict"]["blocks.0.q.step"].fill_(float("nan")), "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(p)
    p = tampered(lambda b: b.__setitem__("version", 99), "ver.pt")
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(p)


def test_uninitialized_qat_checkpoint_is_rejected(tmp_path):
    m = QViT(TINY)
    p = save_checkpoint(tmp_path / "q.pt", m, "qat", TINY_TC)
    with pytest.raises(CheckpointError, match="uninitialized steps"):
        load_checkpoint(p)
