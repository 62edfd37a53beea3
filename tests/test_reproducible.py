"""Reproducible outputs: the same command gives the same bytes — artifacts from ``random-model`` and
``export``, and the Verilog of every block in both FPGA forms — in separate processes, even with
different Python hash seeds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The Verilog the synthesis flow writes as top.v (rtl.synth: same factory, harness and converter),
# for every registered block, both families, at its first sweep point; printed as sha256 per block.
VERILOG_DIGESTS = textwrap.dedent("""
    import hashlib, json
    from equispike.rtl import synth

    synth._load_optional_blocks()
    out = {}
    for name in sorted(synth.BLOCKS):
        factory, defaults, sweep = synth.BLOCKS[name]
        for family in ("ecp5", "ice40"):
            dut = factory({**defaults, **sweep[0], "family": family})
            if family == "ice40":
                top = synth.SerialHarness(dut)
                ports = [top.sin, top.shift, top.capture, top.sout]
            else:
                top, ports = dut, None
            out[f"{name}/{family}"] = hashlib.sha256(synth._verilog(top, ports).encode()).hexdigest()
    print(json.dumps(out, sort_keys=True))
""")


def _env(hash_seed: str) -> dict[str, str]:
    return dict(os.environ, PYTHONHASHSEED=hash_seed, AMARANTH_USE_YOSYS="builtin")


def _run_pair(argv_for, timeout: int = 600) -> list[subprocess.CompletedProcess]:
    """Run the same command twice, concurrently, in separate processes with different hash seeds."""
    procs = [subprocess.Popen(argv_for(i), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(seed)) for i, seed in enumerate(("0", "4242"))]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        assert p.returncode == 0, stderr
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_random_model_artifacts_are_byte_identical(tmp_path):
    paths = [tmp_path / f"m{i}.esa" for i in range(2)]
    _run_pair(lambda i: [sys.executable, "-m", "equispike", "random-model", str(paths[i]), "--dim", "16",
                         "--depth", "2", "--seed", "7"])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].stat().st_size > 1000


def test_exported_artifacts_are_byte_identical(tmp_path):
    torch = pytest.importorskip("torch")
    from equispike.quant.data import load_split
    from equispike.quant.qvit import QViT, ViTConfig
    from equispike.quant.train import TrainConfig, save_checkpoint

    torch.manual_seed(0)
    m = QViT(ViTConfig(dim=16, depth=1, heads=2, mlp_ratio=2, levels=16))
    m.calibrate(torch.as_tensor(load_split().x_train[:64]))
    ckpt = save_checkpoint(tmp_path / "qat.pt", m, "qat", TrainConfig())
    paths = [tmp_path / f"e{i}.esa" for i in range(2)]
    _run_pair(lambda i: [sys.executable, "-m", "equispike", "export", "--checkpoint", str(ckpt),
                         "--out", str(paths[i])])
    # the checkpoint path is recorded in the artifact's meta: export both from the same path
    assert _digest(paths[0]) == _digest(paths[1])


def test_verilog_of_every_block_is_byte_identical():
    runs = _run_pair(lambda i: [sys.executable, "-c", VERILOG_DIGESTS])
    a, b = (json.loads(r.stdout) for r in runs)
    assert {k.split("/")[0] for k in a} >= {"neuron", "engine", "softmax", "layernorm", "sesa", "sdsa"}
    assert len(a) == 2 * len({k.split("/")[0] for k in a})
    differ = sorted(k for k in a if a[k] != b.get(k))
    assert differ == [] and a == b, f"Verilog differs between two runs for {differ}"
