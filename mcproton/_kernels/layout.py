"""The kernel/Python contract, read from its one source: kernels/params.h.

params.h writes each list once, as an X-macro: the fields of ``struct Params`` (MCP_PARAMS_FIELDS), the ledger
entries (MCP_LEDGER_ENTRIES), the columns of the energy and material tables (MCP_ENERGY_COLUMNS,
MCP_MATERIAL_COLUMNS), the flag bits (MCP_FLAGS), and a few scalar ``#define`` s (the fixed-point scales, the
record sizes).  This module parses them with a small, strict parser - an entry it does not understand is an error
at import, never a silently different layout - and builds from them:

* ``PARAMS_DTYPE``: the NumPy mirror of ``struct Params`` (pointer fields hold device or host addresses as
  uint64); tests/kernels/test_layout.py compiles a probe that prints ``sizeof``/``offsetof`` of every field and
  checks them against it, and params.h static_asserts that the struct has no implicit padding;
* ``LEDGER`` (name -> index), ``LEDGER_ENTRIES`` (with kind and description), ``ENERGY_COLUMNS``,
  ``MATERIAL_COLUMNS``, ``FLAGS`` and the scalar constants.

Also here: the argument specification of every entry point (``ENTRY_POINTS``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from ..source import SPOT_DTYPE
from .source import kernels_dir

HEADER = "params.h"


class KernelContractError(RuntimeError):
    """kernels/params.h holds something the contract parser does not understand (or an inconsistent list)."""


@dataclass(frozen=True)
class LedgerEntry:
    name: str     # Python key (= the C NAME in lower case; HistoryLedger's field in transport.cu)
    index: int    # position in the ledger array
    kind: str     # "energy_in" / "energy_out" (fixed point, TALLY_SCALE per MeV) or "count"
    doc: str


_STR = r'((?:"[^"\\]*"\s*)+)'          # one or more adjacent C string literals (no escapes)
_UPPER = r"([A-Z][A-Z0-9_]*)"
_ENTRY_PATTERNS = {
    "index": re.compile(rf"X\(\s*{_UPPER}\s*,\s*(\d+)\s*,\s*{_STR}\)"),
    "ledger": re.compile(rf"X\(\s*{_UPPER}\s*,\s*([a-z][a-z0-9_]*)\s*,\s*(\d+)\s*,\s*(energy_in|energy_out|count)"
                         rf"\s*,\s*{_STR}\)"),
    "field": re.compile(rf"X\(\s*(const\s+)?(float|int32_t|int64_t|uint64_t|uint8_t|Spot)\s*(\*)?\s*,"
                        rf"\s*([a-z_][a-z0-9_]*)\s*,\s*{_STR}\)"),
}
_SCALARS = {"float": np.float32, "int32_t": np.int32, "int64_t": np.int64, "uint64_t": np.uint64}
_UNIQUE = "give each entry its own name and index inside the record (raise the size #define to grow it)"
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def _fail(what: str, fix: str = "write it in the form that params.h's comment on the list shows") -> NoReturn:
    raise KernelContractError(f"kernels/{HEADER}: {what} (the Python side reads this file to mirror the kernels' "
                              f"structs and lists); {fix}")


def _macro_body(text: str, macro: str) -> str:
    """The body of ``#define macro(X)`` with its continuation lines joined."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if re.match(rf"\s*#\s*define\s+{macro}\(X\)(\s|\\|$)", ln)]
    if len(starts) != 1:
        _fail(f"expected one `#define {macro}(X)`, found {len(starts)}")
    i = starts[0]
    body = [lines[i].split(f"{macro}(X)", 1)[1]]
    while body[-1].rstrip().endswith("\\"):
        body[-1] = body[-1].rstrip()[:-1]
        i += 1
        if i == len(lines):
            _fail(f"{macro}: the file ends inside the macro")
        body.append(lines[i])
    return " ".join(body)


def _entries(text: str, macro: str, kind: str) -> list[tuple[str, ...]]:
    body = _COMMENT.sub(" ", _macro_body(text, macro))
    pat = _ENTRY_PATTERNS[kind]
    rest = pat.sub(" ", body).strip()
    if rest:
        _fail(f"{macro}: cannot parse {rest[:120]!r}")
    out = []
    for m in pat.finditer(body):
        g = list(m.groups())
        g[-1] = "".join(re.findall(r'"([^"\\]*)"', g[-1]))     # the description: the literals concatenated
        out.append(tuple(g))
    if not out:
        _fail(f"{macro} is empty")
    return out


def _define(text: str, name: str) -> float:
    found = re.findall(rf"^\s*#\s*define\s+{name}\s+([0-9]+(?:\.[0-9]*)?)f?\s*(?:/\*.*\*/)?\s*$", text, re.M)
    if len(found) != 1:
        _fail(f"expected one `#define {name} <number>`, found {len(found)}")
    return float(found[0])


def _indexed(text: str, macro: str, size: int) -> dict[str, int]:
    """{name in lower case: index} of a column list, checked: unique names and indices inside the record."""
    out: dict[str, int] = {}
    for upper, idx, _doc in _entries(text, macro, "index"):
        if upper.lower() in out or int(idx) in out.values() or not 0 <= int(idx) < size:
            _fail(f"{macro}: {upper} = {idx} repeats a name or an index, or lies outside 0..{size - 1}", _UNIQUE)
        out[upper.lower()] = int(idx)
    return out


def _ledger(text: str, size: int) -> tuple[LedgerEntry, ...]:
    out: list[LedgerEntry] = []
    for upper, name, idx, kind, doc in _entries(text, "MCP_LEDGER_ENTRIES", "ledger"):
        if name != upper.lower():
            _fail(f"MCP_LEDGER_ENTRIES: {upper}: its name {name!r} must be NAME in lower case")
        if any(e.name == name or e.index == int(idx) for e in out) or not 0 <= int(idx) < size:
            _fail(f"MCP_LEDGER_ENTRIES: {upper} = {idx} repeats a name or an index, or lies outside 0..{size - 1} "
                  f"(MCP_N_LEDGER)", _UNIQUE)
        out.append(LedgerEntry(name, int(idx), kind, doc))
    if [e.kind for e in out].count("energy_in") != 1:
        _fail("MCP_LEDGER_ENTRIES: the energy balance needs exactly one energy_in entry")
    return tuple(out)


def _flags(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for upper, bit, _doc in _entries(text, "MCP_FLAGS", "index"):
        b = int(bit)
        if b <= 0 or b & (b - 1) or b in out.values() or upper.lower() in out:
            _fail(f"MCP_FLAGS: {upper} = {bit} is not a distinct single bit", "give each flag its own power of two")
        out[upper.lower()] = b
    return out


def _params_roles(text: str) -> dict[str, list[tuple[str, ...]]]:
    """{role: its field entries}: MCP_PARAMS_FIELDS(X) is the sequence of the role lists MCP_PARAMS_<ROLE>(X)."""
    body = _COMMENT.sub(" ", _macro_body(text, "MCP_PARAMS_FIELDS"))
    pat = re.compile(r"MCP_PARAMS_([A-Z]+)\(X\)")
    if pat.sub(" ", body).strip() or not pat.search(body):
        _fail(f"MCP_PARAMS_FIELDS: expected a sequence of MCP_PARAMS_<ROLE>(X), got {body.strip()[:120]!r}")
    roles = [m.group(1) for m in pat.finditer(body)]
    if len(set(roles)) != len(roles):
        _fail(f"MCP_PARAMS_FIELDS: a role appears twice in {roles}")
    return {r.lower(): _entries(text, f"MCP_PARAMS_{r}", "field") for r in roles}


def _params_dtype(text: str) -> tuple[np.dtype, dict[str, str], dict[str, tuple[str, ...]]]:
    fields, ctypes = [], {}
    roles = _params_roles(text)
    for const, ctype, ptr, name, _doc in (e for entries in roles.values() for e in entries):
        if name in ctypes:
            _fail(f"MCP_PARAMS_FIELDS: field {name} declared twice", "rename one of them")
        if ptr:
            fields.append((name, np.uint64))
        elif ctype in _SCALARS and not const:
            fields.append((name, _SCALARS[ctype]))
        else:
            _fail(f"MCP_PARAMS_FIELDS: field {name} of type {(const or '') + ctype}: a by-value field must be "
                  f"float, int32_t, int64_t or uint64_t", "use one of those, or a pointer")
        ctypes[name] = f"{const or ''}{ctype}{ptr or ''}"
    dt = np.dtype(fields, align=True)
    if dt.itemsize != sum(dt.fields[n][0].itemsize for n in dt.names):
        _fail("struct Params would have implicit padding", "add an explicit pad field where alignment needs one")
    return dt, ctypes, {r: tuple(e[3] for e in entries) for r, entries in roles.items()}


def parse_header(path: Path | None = None) -> dict:
    """Everything the contract holds, parsed from params.h (``path`` for tests: another header to parse)."""
    text = (path or kernels_dir() / HEADER).read_text()
    n_ledger = int(_define(text, "MCP_N_LEDGER"))
    n_energy = int(_define(text, "MCP_N_ENERGY_COLUMNS"))
    n_material = int(_define(text, "MCP_N_MATERIAL_COLUMNS"))
    dtype, ctypes, roles = _params_dtype(text)
    return {
        "params_dtype": dtype, "params_ctypes": ctypes, "params_roles": roles,
        "ledger_entries": _ledger(text, n_ledger), "n_ledger": n_ledger,
        "energy_columns": _indexed(text, "MCP_ENERGY_COLUMNS", n_energy), "n_energy_columns": n_energy,
        "material_columns": _indexed(text, "MCP_MATERIAL_COLUMNS", n_material), "n_material_columns": n_material,
        "flags": _flags(text),
        "tally_scale": _define(text, "MCP_TALLY_SCALE"), "let_scale": _define(text, "MCP_LET_SCALE"),
        "touch_shift": int(_define(text, "MCP_TOUCH_SHIFT")),
        "history_step_slots": int(_define(text, "MCP_HISTORY_STEP_SLOTS")),
    }


_C = parse_header()

PARAMS_DTYPE: np.dtype = _C["params_dtype"]
PARAMS_CTYPES: dict[str, str] = _C["params_ctypes"]     # field -> C type as params.h writes it
PARAMS_ROLES: dict[str, tuple[str, ...]] = _C["params_roles"]   # tables, grid, source, tallies, options -> fields

LEDGER_ENTRIES: tuple[LedgerEntry, ...] = _C["ledger_entries"]
LEDGER: dict[str, int] = {e.name: e.index for e in LEDGER_ENTRIES}
N_LEDGER: int = _C["n_ledger"]

ENERGY_COLUMNS: dict[str, int] = _C["energy_columns"]   # energy-table column name -> index (COL_*)
N_ENERGY_COLUMNS: int = _C["n_energy_columns"]
MATERIAL_COLUMNS: dict[str, int] = _C["material_columns"]   # material-record column name -> index (MAT_*)
N_MATERIAL_COLUMNS: int = _C["n_material_columns"]

FLAGS: dict[str, int] = _C["flags"]                     # flag name -> bit of Params::flags (MCP_FLAG_*)
FLAG_STRAGGLING = FLAGS["straggling"]
FLAG_MSC = FLAGS["msc"]
FLAG_NUCLEAR = FLAGS["nuclear"]
FLAG_SHARED_TALLY = FLAGS["shared_tally"]

TALLY_SCALE: float = _C["tally_scale"]        # MCP_TALLY_SCALE: fixed-point units per MeV
LET_SCALE: float = _C["let_scale"]            # MCP_LET_SCALE
TOUCH_SHIFT: int = _C["touch_shift"]          # MCP_TOUCH_SHIFT: voxels per block of the touched flags = 2**TOUCH_SHIFT
HISTORY_STEP_SLOTS: int = _C["history_step_slots"]   # MCP_HISTORY_STEP_SLOTS

# Order of mcp_probe_layout's output (kernels/probes.cu): sizeof(Params), every Params field, then Spot.
_SPOT_PROBE = {"Spot.energy": "energy_mev", "Spot.sigma": "sigma_cm", "Spot.corr": "corr",
               "Spot.rs_thickness_cm": "rs_thickness_cm", "Spot.rs_material": "rs_material"}
LAYOUT_PROBE_FIELDS = ["sizeof(Params)", *PARAMS_DTYPE.names, "sizeof(Spot)", *_SPOT_PROBE]


def expected_layout() -> list[int]:
    """The values mcp_probe_layout must print, from the NumPy dtypes (in LAYOUT_PROBE_FIELDS order)."""
    vals = [PARAMS_DTYPE.itemsize] + [PARAMS_DTYPE.fields[n][1] for n in PARAMS_DTYPE.names]
    vals += [SPOT_DTYPE.itemsize] + [SPOT_DTYPE.fields[f][1] for f in _SPOT_PROBE.values()]
    return vals


def contract_probe_expected() -> list[int]:
    """The values mcp_probe_contract (kernels/probes.cu) must print: what the compiler made of params.h's lists
    must be what this module parsed from them."""
    vals = [N_LEDGER, len(LEDGER_ENTRIES), *(e.index for e in LEDGER_ENTRIES)]
    vals += [N_ENERGY_COLUMNS, len(ENERGY_COLUMNS), *ENERGY_COLUMNS.values()]
    vals += [N_MATERIAL_COLUMNS, len(MATERIAL_COLUMNS), *MATERIAL_COLUMNS.values()]
    vals += [len(FLAGS), *FLAGS.values()]
    vals += [int(TALLY_SCALE), int(LET_SCALE), TOUCH_SHIFT, HISTORY_STEP_SLOTS, PARAMS_DTYPE.itemsize]
    return vals


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
    "mcp_probe_contract": ("probes.cu", ("p",)),
}
