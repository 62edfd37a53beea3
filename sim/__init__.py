"""Verification harness shared by all RTL tests.

* :mod:`.build` -- Amaranth -> Verilog, Verilator + cocotb runner, lint, per-config build dirs.
* :mod:`.streams` -- payload pack/unpack from Amaranth layouts, cocotb stream driver/monitor.
* :mod:`.scoreboard` -- golden-vs-DUT comparison reporting the first mismatch.
* :mod:`.amaranth_tb` -- the same stream helpers for Amaranth's fast simulator.
"""

from .build import (
    BUILD_ROOT,
    CONFIG_ENV,
    LINT_WAIVERS,
    VERILATOR_WARN_ARGS,
    build_dir_for,
    lint_verilog,
    run_cocotb,
    tb_config,
    to_verilog,
    waves_enabled,
    write_verilog,
)
from .scoreboard import Mismatch, Scoreboard
from .streams import StreamDriver, StreamMonitor, as_int, pack, unpack

__all__ = [
    "BUILD_ROOT",
    "CONFIG_ENV",
    "LINT_WAIVERS",
    "VERILATOR_WARN_ARGS",
    "build_dir_for",
    "lint_verilog",
    "run_cocotb",
    "tb_config",
    "to_verilog",
    "waves_enabled",
    "write_verilog",
    "Mismatch",
    "Scoreboard",
    "StreamDriver",
    "StreamMonitor",
    "pack",
    "unpack",
    "as_int",
]
