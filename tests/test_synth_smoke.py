"""Smoke synthesis inside `make test`: one small block through Yosys and nextpnr, figures parsed.

The full sweep (`make synth`) is not part of CI; this only catches breakage of the flow.
"""

from __future__ import annotations

import json

import pytest

from equispike.rtl.synth import TARGETS, synthesize


def test_small_neuron_array_places_and_routes_on_ecp5(tmp_path):
    params = {"lanes": 2, "neurons": 4, "current_width": 8, "membrane_width": 10}
    res = synthesize("neuron", "ecp5-25", params, log=lambda s: None, out_root=tmp_path)
    assert res["LUT4"] > 0 and res["FF"] > 0
    assert res["Fmax_MHz"] is not None and res["Fmax_MHz"] > 0
    written = json.loads(
        (
            tmp_path / "ecp5-25" / "neuron_current_width8_lanes2_membrane_width10_neurons4" / "result.json"
        ).read_text()
    )
    assert written == res


def test_bad_requests_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown block"):
        synthesize("nonesuch", "ecp5-25", out_root=tmp_path)
    with pytest.raises(ValueError, match="unknown target"):
        synthesize("neuron", "virtex", out_root=tmp_path)
    assert set(TARGETS) == {"ecp5-85", "ecp5-25", "up5k"}
