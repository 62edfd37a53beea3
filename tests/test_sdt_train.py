"""A tiny trained spike-driven transformer: exported integers == training forward == golden model on
all 360 test images; the same command gives the same artifact bytes; train/eval/demo --arch sdt."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from equispike.model.sdt import load_sdt_artifact, run_sdt, save_sdt_artifact
from equispike.quant import commands
from equispike.quant.data import load_split
from equispike.quant.sdt import SDTConfig, forward_int
from equispike.quant.sdt_train import SDTTrainConfig, train_sdt

torch.set_num_threads(1)

TINY = [
    "--dim",
    "16",
    "--heads",
    "2",
    "--depth",
    "1",
    "--timesteps",
    "2",
    "--float-epochs",
    "1",
    "--qat-epochs",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def trained():
    data = load_split()
    mc = SDTConfig(dim=16, heads=2, depth=1, timesteps=2)
    tc = SDTTrainConfig(float_epochs=5, int_epochs=2, float_lr=1e-2)
    art, summary = train_sdt(mc, tc, quiet=True, data=data)
    return art, summary, data, mc, tc


def test_trained_model_golden_equals_pytorch_on_every_test_image(trained):
    art, summary, data, _, _ = trained
    assert len(data.y_test) == 360
    golden = run_sdt(art, data.x_test)
    torch_int = forward_int(art, data.x_test).numpy()
    assert (golden.logits == torch_int).all(axis=1).mean() == 1.0
    acc = float((golden.logits.argmax(1) == data.y_test).mean())
    assert acc == summary["int_test_acc"] == art.meta["int_test_acc"]
    assert acc > 0.2  # twice chance after a few tiny epochs: the training reaches the integers
    assert art.meta["float_test_acc"] == summary["float_test_acc"]
    for t in (1, 3):
        np.testing.assert_array_equal(
            run_sdt(art, data.x_test[:40], t).logits, forward_int(art, data.x_test[:40], t).numpy()
        )


def test_same_configuration_same_bytes(trained, tmp_path):
    art, _, data, mc, tc = trained
    again, _ = train_sdt(mc, tc, quiet=True, data=data)
    a = save_sdt_artifact(art, tmp_path / "a.esa").read_bytes()
    b = save_sdt_artifact(again, tmp_path / "b.esa").read_bytes()
    assert a == b


def test_train_eval_demo_commands(tmp_path, capsys):
    out = tmp_path / "sdt"
    assert commands.main(["train", "--arch", "sdt", "--out-dir", str(out), *TINY]) == 0
    path = out / "model.esa"
    art = load_sdt_artifact(path)
    assert art.timesteps == 2 and art.dims.dim == 16
    capsys.readouterr()
    # the architecture comes from the artifact itself
    assert commands.main(["eval", "--artifact", str(path), "--limit", "30", "--json", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["arch"] == "sdt" and r["images"] == 30 and r["agreement"] == 1.0
    assert r["pytorch_int_acc"] == r["golden_acc"]
    assert r["float_acc"] == art.meta["float_test_acc"]
    assert [t for t, _ in r["accuracy_vs_T"]] == [1, 2]
    assert r["macs_per_image"]["mean"] > 0 and r["acs_per_image"]["mean"] > 0
    assert (
        commands.main(
            ["eval", "--artifact", str(path), "--limit", "10", "--timesteps", "1", "--json", "--quiet"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["timesteps"] == 1
    assert commands.main(["demo", "--arch", "sdt", "--out-dir", str(out), "--limit", "10", *TINY]) == 0
    text = capsys.readouterr()
    assert "reusing cached run" in text.err and "PyTorch == golden (logits)   100.00 %" in text.out
    assert json.loads((out / "eval.json").read_text())["agreement"] == 1.0


def test_bad_training_options_exit_2(tmp_path, capsys):
    argv = ["train", "--arch", "sdt", "--out-dir", str(tmp_path), "--dim", "10", "--heads", "3", "--quiet"]
    assert commands.main(argv) == 2
    assert "heads" in capsys.readouterr().err
    assert commands.main(["train", "--timesteps", "2", "--out-dir", str(tmp_path), "--quiet"]) == 2
    assert "--arch sdt only" in capsys.readouterr().err
