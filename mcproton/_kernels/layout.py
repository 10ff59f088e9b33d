"""NumPy mirrors of the kernels' by-value structs, and the argument specification of every entry point.

``PARAMS_DTYPE`` mirrors ``struct Params`` (kernels/params.h) field by field; pointer fields hold device or
host addresses as uint64.  tests/kernels/test_layout.py compiles a probe that prints ``sizeof``/``offsetof``
and checks them against these dtypes.
"""
from __future__ import annotations

import numpy as np

from ..source import SPOT_DTYPE

_PTR = np.uint64

PARAMS_DTYPE = np.dtype([
    ("energy_table", _PTR), ("range_index", _PTR), ("material_props", _PTR),
    ("material_index", _PTR), ("density", _PTR),
    ("spots", _PTR), ("spot_cdf", _PTR),
    ("edep", _PTR), ("edep_water", _PTR), ("edep_proton", _PTR), ("let_num", _PTR), ("ledger", _PTR),
    ("log_e_min", np.float32), ("inv_dlog_e", np.float32), ("log_r_min", np.float32), ("inv_dlog_r", np.float32),
    ("n_e", np.int32), ("n_r", np.int32), ("n_mat", np.int32), ("n_spots", np.int32),
    ("nx", np.int32), ("ny", np.int32), ("nz", np.int32), ("flags", np.int32),
    ("vx", np.float32), ("vy", np.float32), ("vz", np.float32),
    ("e_cut", np.float32), ("max_eloss_fraction", np.float32), ("max_step", np.float32),
    ("dlog_e", np.float32), ("pad1", np.float32),
    ("seed", np.uint64),
    ("tally_stride", np.int64),
    ("inv_vx", np.float32), ("inv_vy", np.float32), ("inv_vz", np.float32), ("n_slots", np.int32),
    ("touched", _PTR),
    ("history_steps", _PTR),
], align=True)

# Order of mcp_probe_layout's output (kernels/probes.cu).
LAYOUT_PROBE_FIELDS = (
    ["sizeof(Params)"]
    + ["energy_table", "range_index", "material_props", "material_index", "density", "spots", "spot_cdf",
       "edep", "edep_water", "edep_proton", "let_num", "ledger", "log_e_min", "inv_dlog_e", "log_r_min",
       "inv_dlog_r", "n_e", "n_r", "n_mat", "n_spots", "nx", "ny", "nz", "flags", "vx", "vy", "vz", "e_cut",
       "max_eloss_fraction", "max_step", "dlog_e", "seed", "tally_stride", "inv_vx", "inv_vz", "n_slots", "touched"]
    + ["sizeof(Spot)", "Spot.energy", "Spot.sigma", "Spot.corr", "Spot.rs_thickness_cm", "Spot.rs_material"]
)


def expected_layout() -> list[int]:
    vals = [PARAMS_DTYPE.itemsize]
    vals += [PARAMS_DTYPE.fields[n][1] for n in LAYOUT_PROBE_FIELDS[1:-6]]
    vals += [SPOT_DTYPE.itemsize, SPOT_DTYPE.fields["energy_mev"][1], SPOT_DTYPE.fields["sigma_cm"][1],
             SPOT_DTYPE.fields["corr"][1], SPOT_DTYPE.fields["rs_thickness_cm"][1], SPOT_DTYPE.fields["rs_material"][1]]
    return vals


# Flags (kernels/params.h).
FLAG_STRAGGLING = 1
FLAG_MSC = 2
FLAG_NUCLEAR = 4
FLAG_SHARED_TALLY = 8
TOUCH_SHIFT = 5   # MCP_TOUCH_SHIFT (kernels/params.h): voxels per block of the touched flags = 2**TOUCH_SHIFT

# Ledger entries (kernels/params.h enum LedgerEntry).
LEDGER = {"incident": 0, "deposited": 1, "escaped": 2, "missed": 3, "neutral": 4, "primaries": 5,
          "nuclear_events": 6, "secondaries": 7, "errors": 8, "stack_full": 9, "steps": 10, "pp_elastic": 11,
          "nuclear_elastic": 12, "shifter": 13, "shifter_removed": 14}
N_LEDGER = 16
TALLY_SCALE = 16777216.0   # MCP_TALLY_SCALE: fixed-point units per MeV
LET_SCALE = 1048576.0      # MCP_LET_SCALE

# Argument types of every entry point: "p" pointer, "u64", "i64", "i32", "f32".
ENTRY_POINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mcp_transport": ("transport.cu", ("p", "u64", "i64")),
    "mcp_probe_philox": ("probes.cu", ("p", "p", "i64")),
    "mcp_probe_stream": ("probes.cu", ("u64", "u64", "i32", "p", "i64", "i64")),
    "mcp_probe_energy_loss": ("probes.cu", ("p", "p", "p", "p", "p", "i64")),
    "mcp_probe_physics": ("probes.cu", ("p", "p", "i64")),
    "mcp_probe_source": ("probes.cu", ("p", "p", "i64")),
    "mcp_probe_elastic": ("probes.cu", ("p", "u64", "p", "i64")),
    "mcp_probe_pp": ("probes.cu", ("p", "p", "i64")),
    "mcp_probe_walk": ("probes.cu", ("p", "p", "p", "p", "i64")),
    "mcp_probe_fragment": ("probes.cu", ("p", "u64", "p", "p", "i64")),
    "mcp_probe_layout": ("probes.cu", ("p",)),
}
