"""The frozen calibration / held-out split of the measurement store, and how a row names its model.

Calibration fits only on the rows named here; ``g4sim validate`` holds every other row to the
tolerances.  The split was fixed before the efficiencies were fitted; a held-out row that fails
is reported, never moved into calibration.
"""

from __future__ import annotations

from typing import Any

CALIBRATION_MODELS = {"e2b", "31b"}  # dense efficiencies; validated on e4b and 26b-a4b
CALIBRATION_MOE_ROWS = {("26b-a4b", 2048)}  # the expert-GEMM half-rows constant; 26b-a4b at 512 / 1024 validate it


def is_calibration_row(model: str, ctx: int) -> bool:
    return model in CALIBRATION_MODELS or (model, ctx) in CALIBRATION_MOE_ROWS


def weight_format(row: dict[str, Any]) -> str:
    quant = row.get("quant") or ""
    return quant if isinstance(quant, str) and quant else str(row["dtype"])


def row_spec(row: dict[str, Any]):
    from g4sim.spec import FULL, SLIDING, get_variant

    spec = get_variant(str(row["model"]))
    spec = spec.reduced(int(row["layers"]))
    types = tuple(SLIDING if c == "S" else FULL for c in str(row.get("layer_types", "")))
    assert not types or types == spec.text.layer_types, f"row layer pattern {row['layer_types']} != spec"
    return spec
