"""The kernel/Python contract, read from its one source: kernels/params.h (and kernels/source/spot.h).

params.h writes each list once, as an X-macro: the fields of ``struct Params`` by role (MCP_PARAMS_ROLES:
tables, grid, source, tallies, options, each with its field list MCP_PARAMS_<ROLE>, expanded into TableParams,
GridParams, ...), the ledger entries (MCP_LEDGER_ENTRIES), the columns of the energy and material tables
(MCP_ENERGY_COLUMNS, MCP_MATERIAL_COLUMNS), the flag bits (MCP_FLAGS), and a few scalar ``#define`` s (the
fixed-point scales, the record sizes); source/spot.h the fields of ``struct Spot`` (MCP_SPOT_FIELDS).  This
module parses them with a small, strict parser - an entry it does not understand is an error at import, never
a silently different layout - and builds from them:

* ``PARAMS_DTYPE``: the NumPy mirror of ``struct Params``, nested like it (``PARAMS_DTYPE["grid"]["nx"]``;
  pointer fields hold device or host addresses as uint64), and ``ParamsView`` / ``new_params()``, which
  address a field by its name alone (``p["nx"] = 64``: field names are unique across the roles);
* ``SPOT_DTYPE``: the mirror of ``struct Spot`` (re-exported as mcproton.source.SPOT_DTYPE);
* ``LEDGER`` (name -> index), ``LEDGER_ENTRIES`` (with kind and description), ``ENERGY_COLUMNS``,
  ``MATERIAL_COLUMNS``, ``FLAGS`` and the scalar constants.

tests/kernels/test_layout.py compiles a probe that prints the size and offset of every role and field of
Params and of every field of Spot and checks them against the dtypes; static_asserts in the headers stop the
compiler on implicit padding; tests/kernels/test_contract.py checks the lists and constants through a second
probe.

Also here: ``ENTRY_POINTS``, each entry point's file and argument kinds, parsed from the ``MCP_KERNEL``
declarations of transport.cu and probes.cu (tests/engine/test_cuda_emulated.py checks it with another parser).
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from .source import ENTRY_FILES, kernels_dir

HEADER = "params.h"
SPOT_HEADER = "source/spot.h"


class KernelContractError(RuntimeError):
    """kernels/params.h or kernels/source/spot.h holds something the contract parser does not understand (or
    an inconsistent list)."""


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
    "ledger": re.compile(rf"X\(\s*{_UPPER}\s*,\s*([a-z][a-z0-9_]*)\s*,\s*(\d+)\s*,"
                         rf"\s*(energy_in|energy_out|count)\s*,\s*{_STR}\)"),
    "role": re.compile(rf"X\(\s*([A-Z][A-Za-z0-9]*)\s*,\s*([a-z][a-z0-9_]*)\s*,\s*(MCP_PARAMS_[A-Z0-9_]+)\s*,"
                       rf"\s*{_STR}\)"),
    "field": re.compile(rf"X\(\s*(const\s+)?(float|int32_t|int64_t|uint64_t|uint8_t|Spot)\s*(\*)?\s*,"
                        rf"\s*([a-z_][a-z0-9_]*)\s*,\s*{_STR}\)"),
    "spot": re.compile(rf"X\(\s*(float|int32_t)\s*,\s*([a-z_][a-z0-9_]*)\s*,\s*([123])\s*,\s*{_STR}\)"),
}
_SCALARS = {"float": np.float32, "int32_t": np.int32, "int64_t": np.int64, "uint64_t": np.uint64}
_UNIQUE = "give each entry its own name and index inside the record (raise the size #define to grow it)"
_COMMENT = re.compile(r"/\*.*?\*/", re.S)


class _Refused(Exception):
    def __init__(self, what: str, fix: str):
        super().__init__(what)
        self.what, self.fix = what, fix


def _fail(what: str, fix: str = "write it in the form that the comment on the list shows") -> NoReturn:
    raise _Refused(what, fix)


@contextmanager
def _reading(header: str):
    """Turn a refusal of the parser into a KernelContractError that names the header file."""
    try:
        yield
    except _Refused as e:
        raise KernelContractError(f"kernels/{header}: {e.what} (the Python side reads this file to mirror "
                                  f"the kernels' structs and lists); {e.fix}") from None


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
            _fail(f"{macro}: {upper} = {idx} repeats a name or an index, or lies outside 0..{size - 1}",
                  _UNIQUE)
        out[upper.lower()] = int(idx)
    return out


def _ledger(text: str, size: int) -> tuple[LedgerEntry, ...]:
    out: list[LedgerEntry] = []
    for upper, name, idx, kind, doc in _entries(text, "MCP_LEDGER_ENTRIES", "ledger"):
        if name != upper.lower():
            _fail(f"MCP_LEDGER_ENTRIES: {upper}: its name {name!r} must be NAME in lower case")
        if any(e.name == name or e.index == int(idx) for e in out) or not 0 <= int(idx) < size:
            _fail(f"MCP_LEDGER_ENTRIES: {upper} = {idx} repeats a name or an index, or lies outside "
                  f"0..{size - 1} "
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
            _fail(f"MCP_FLAGS: {upper} = {bit} is not a distinct single bit",
                  "give each flag its own power of two")
        out[upper.lower()] = b
    return out


@dataclass(frozen=True)
class ParamsRole:
    name: str                   # member of struct Params (tables, grid, ...) and field of PARAMS_DTYPE
    ctype: str                  # its C struct (TableParams, ...)
    fields: tuple[str, ...]     # its field names, in order
    doc: str


def _params_roles(text: str) -> list[tuple[ParamsRole, list[tuple[str, ...]]]]:
    """The roles of MCP_PARAMS_ROLES, in order, each with the entries of its field list MCP_PARAMS_<ROLE>."""
    out: list[tuple[ParamsRole, list[tuple[str, ...]]]] = []
    for ctype, member, macro, doc in _entries(text, "MCP_PARAMS_ROLES", "role"):
        if macro != f"MCP_PARAMS_{member.upper()}":
            _fail(f"MCP_PARAMS_ROLES: the role {member} has the field list {macro}",
                  f"name a role's list after its member: MCP_PARAMS_{member.upper()}")
        if any(r.name == member or r.ctype == ctype for r, _ in out):
            _fail(f"MCP_PARAMS_ROLES: the role {member} ({ctype}) repeats a member or a struct",
                  "give each role its own struct, member and field list")
        entries = _entries(text, macro, "field")
        out.append((ParamsRole(member, ctype, tuple(e[3] for e in entries), doc), entries))
    return out


def _params_dtype(text: str) -> tuple[np.dtype, dict[str, str], tuple[ParamsRole, ...]]:
    """The nested NumPy mirror of struct Params (a sub-dtype per role), each field's C type, the roles."""
    subs, ctypes = [], {}
    roles = _params_roles(text)
    for role, entries in roles:
        fields = []
        for const, ctype, ptr, name, _doc in entries:
            if name in ctypes or any(name == r.name for r, _ in roles):
                _fail(f"MCP_PARAMS_{role.name.upper()}: field {name} declared twice, or named like a role "
                      f"(the Python side addresses every field by its name alone, p[\"{name}\"])",
                      "rename one of them")
            if ptr:
                fields.append((name, np.uint64))
            elif ctype in _SCALARS and not const:
                fields.append((name, _SCALARS[ctype]))
            else:
                _fail(f"MCP_PARAMS_{role.name.upper()}: field {name} of type {(const or '') + ctype}: a "
                      f"by-value field must be float, int32_t, int64_t or uint64_t",
                      "use one of those, or a pointer")
            ctypes[name] = f"{const or ''}{ctype}{ptr or ''}"
        sub = np.dtype(fields, align=True)
        if sub.itemsize != sum(sub.fields[n][0].itemsize for n in sub.names):
            _fail(f"struct {role.ctype} (MCP_PARAMS_{role.name.upper()}) would have implicit padding",
                  "order its fields by size, and add an explicit pad field (pad_<role>) where alignment "
                  "needs one")
        subs.append((role.name, sub))
    dt = np.dtype(subs, align=True)
    if dt.itemsize != sum(sub.itemsize for _, sub in subs):
        _fail("struct Params would have padding between its roles",
              "give every role's struct a multiple of 8 bytes (an explicit pad field)")
    return dt, ctypes, tuple(r for r, _ in roles)


def parse_header(path: Path | None = None) -> dict:
    """Everything the contract holds, parsed from params.h (``path`` for tests: another header to parse)."""
    with _reading(HEADER):
        return _parse_params_h((path or kernels_dir() / HEADER).read_text(encoding="utf-8"))


def parse_spot_header(path: Path | None = None) -> np.dtype:
    """The NumPy mirror of struct Spot, parsed from source/spot.h's MCP_SPOT_FIELDS (``path`` for tests)."""
    with _reading(SPOT_HEADER):
        fields, names = [], set()
        for ctype, name, count, _doc in _entries((path or kernels_dir() / SPOT_HEADER).read_text(encoding="utf-8"),
                                                 "MCP_SPOT_FIELDS", "spot"):
            if name in names:
                _fail(f"MCP_SPOT_FIELDS: field {name} declared twice", "rename one of them")
            names.add(name)
            fields.append((name, _SCALARS[ctype]) if count == "1" else (name, _SCALARS[ctype], int(count)))
        dt = np.dtype(fields, align=True)
        if dt.itemsize != sum(dt.fields[n][0].itemsize for n in dt.names):
            _fail("struct Spot would have implicit padding",
                  "reorder its fields or add an explicit pad field")
        return dt


def _parse_params_h(text: str) -> dict:
    n_ledger = int(_define(text, "MCP_N_LEDGER"))
    n_energy = int(_define(text, "MCP_N_ENERGY_COLUMNS"))
    n_material = int(_define(text, "MCP_N_MATERIAL_COLUMNS"))
    dtype, ctypes, roles = _params_dtype(text)
    return {
        "params_dtype": dtype, "params_ctypes": ctypes, "params_roles": roles,
        "ledger_entries": _ledger(text, n_ledger), "n_ledger": n_ledger,
        "energy_columns": _indexed(text, "MCP_ENERGY_COLUMNS", n_energy), "n_energy_columns": n_energy,
        "material_columns": _indexed(text, "MCP_MATERIAL_COLUMNS", n_material),
        "n_material_columns": n_material,
        "flags": _flags(text),
        "tally_scale": _define(text, "MCP_TALLY_SCALE"), "let_scale": _define(text, "MCP_LET_SCALE"),
        "touch_shift": int(_define(text, "MCP_TOUCH_SHIFT")),
        "history_step_slots": int(_define(text, "MCP_HISTORY_STEP_SLOTS")),
    }


_C = parse_header()

SPOT_DTYPE: np.dtype = parse_spot_header()   # struct Spot (mcproton.source.SPOT_DTYPE)

PARAMS_DTYPE: np.dtype = _C["params_dtype"]   # nested: PARAMS_DTYPE["grid"]["nx"] mirrors Params::grid.nx
PARAMS_CTYPES: dict[str, str] = _C["params_ctypes"]     # field -> C type as params.h writes it
PARAMS_ROLE_INFO: tuple[ParamsRole, ...] = _C["params_roles"]
# role (tables, grid, source, tallies, options) -> its fields; field -> its role
PARAMS_ROLES: dict[str, tuple[str, ...]] = {r.name: r.fields for r in PARAMS_ROLE_INFO}
PARAMS_FIELD_ROLE: dict[str, str] = {f: r.name for r in PARAMS_ROLE_INFO for f in r.fields}

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
TOUCH_SHIFT: int = _C["touch_shift"]          # MCP_TOUCH_SHIFT: voxels per touched block = 2**TOUCH_SHIFT
HISTORY_STEP_SLOTS: int = _C["history_step_slots"]   # MCP_HISTORY_STEP_SLOTS

# Order of mcp_probe_layout's output (kernels/probes.cu): sizeof(Params); for each role its offset, its size
# and the offset in Params of each of its fields; then sizeof(Spot) and the offset of each of its fields.
LAYOUT_PROBE_FIELDS = ["sizeof(Params)"]
for _r in PARAMS_ROLE_INFO:
    LAYOUT_PROBE_FIELDS += [f"Params.{_r.name}", f"sizeof({_r.ctype})",
                            *(f"Params.{_r.name}.{f}" for f in _r.fields)]
LAYOUT_PROBE_FIELDS += ["sizeof(Spot)", *(f"Spot.{f}" for f in SPOT_DTYPE.names)]


def expected_layout() -> list[int]:
    """The values mcp_probe_layout must print, from the NumPy dtypes (in LAYOUT_PROBE_FIELDS order)."""
    vals = [PARAMS_DTYPE.itemsize]
    for role in PARAMS_DTYPE.names:
        sub, base = PARAMS_DTYPE.fields[role][:2]
        vals += [base, sub.itemsize, *(base + sub.fields[f][1] for f in sub.names)]
    vals += [SPOT_DTYPE.itemsize] + [SPOT_DTYPE.fields[f][1] for f in SPOT_DTYPE.names]
    return vals


class UnknownParamsField(KeyError):
    """A name that is no field of struct Params (kernels/params.h MCP_PARAMS_<ROLE> lists)."""

    def __str__(self) -> str:     # the message itself, not KeyError's repr of it
        return str(self.args[0])


class ParamsView:
    """One ``struct Params`` in host memory, its fields addressed by name alone: ``p["nx"] = 64`` writes
    ``Params::grid.nx``, the role found in PARAMS_FIELD_ROLE (field names are unique across the roles).

    ``p["nx"]`` is the field as a (1,)-shaped view (``p["nx"][0]`` the value), ``p.array`` the whole struct (a
    (1,)-shaped array of the nested PARAMS_DTYPE), ``p.view(np.uint8)`` its bytes for a launch, ``p.copy()``
    an independent copy.  A name that is no field raises UnknownParamsField (a KeyError) naming the fields."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        if array is None:
            array = np.zeros(1, PARAMS_DTYPE)
        if not isinstance(array, np.ndarray) or array.dtype != PARAMS_DTYPE or array.shape != (1,):
            got = f"{type(array).__name__} {getattr(array, 'dtype', '')} {getattr(array, 'shape', '')}"
            raise TypeError(f"ParamsView wraps a (1,)-shaped array of PARAMS_DTYPE, not {got}; "
                            "use new_params()")
        self.array = array

    def _role(self, name: str) -> np.ndarray:
        role = PARAMS_FIELD_ROLE.get(name) if isinstance(name, str) else None
        if role is None:
            raise UnknownParamsField(f"struct Params has no field {name!r} (kernels/{HEADER} lists its "
                                     f"fields by role); use one of: {', '.join(PARAMS_FIELD_ROLE)}")
        return self.array[role]

    def __getitem__(self, name: str) -> np.ndarray:
        return self._role(name)[name]

    def __setitem__(self, name: str, value) -> None:
        self._role(name)[name] = value

    def __contains__(self, name: object) -> bool:
        return name in PARAMS_FIELD_ROLE

    def keys(self) -> list[str]:
        return list(PARAMS_FIELD_ROLE)

    def copy(self) -> ParamsView:
        return ParamsView(self.array.copy())

    def view(self, dtype) -> np.ndarray:
        return self.array.view(dtype)

    def __repr__(self) -> str:
        return "ParamsView(" + ", ".join(f"{k}={self[k][0].item()!r}" for k in PARAMS_FIELD_ROLE) + ")"


def new_params() -> ParamsView:
    """A zeroed struct Params, filled field by field: ``p = new_params(); p["nx"] = 64``."""
    return ParamsView()


def contract_probe_expected() -> list[int]:
    """The values mcp_probe_contract (kernels/probes.cu) must print: what the compiler made of params.h's
    lists must be what this module parsed from them."""
    vals = [N_LEDGER, len(LEDGER_ENTRIES), *(e.index for e in LEDGER_ENTRIES)]
    vals += [N_ENERGY_COLUMNS, len(ENERGY_COLUMNS), *ENERGY_COLUMNS.values()]
    vals += [N_MATERIAL_COLUMNS, len(MATERIAL_COLUMNS), *MATERIAL_COLUMNS.values()]
    vals += [len(FLAGS), *FLAGS.values()]
    vals += [int(TALLY_SCALE), int(LET_SCALE), TOUCH_SHIFT, HISTORY_STEP_SLOTS, PARAMS_DTYPE.itemsize]
    return vals


_KERNEL_DECL = re.compile(r"\bMCP_KERNEL\s+void\s+([A-Za-z_]\w*)\s*\(([^)]*)\)")
_ARG_KINDS = {"uint64_t": "u64", "int64_t": "i64", "int32_t": "i32", "float": "f32"}


def parse_entry_points(folder: Path | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{kernel: (entry file, argument kinds)} read from the ``MCP_KERNEL void name(...)`` declarations of the
    entry files (transport.cu, probes.cu; ``folder`` for tests): "p" a pointer, "u64", "i64", "i32", "f32" a
    by-value uint64_t, int64_t, int32_t or float (how both backends cast a launch's arguments)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in ENTRY_FILES:
        with _reading(entry):
            text = _COMMENT.sub(" ", ((folder or kernels_dir()) / entry).read_text(encoding="utf-8"))
            found = _KERNEL_DECL.findall(text)
            if len(found) != text.count("MCP_KERNEL"):
                _fail("an MCP_KERNEL that is not `MCP_KERNEL void name(parameters)` on consecutive lines",
                      "declare every entry point in that form")
            for name, params in found:
                kinds = []
                for prm in params.split(","):
                    prm = " ".join(prm.replace("MCP_RESTRICT", " ").split())
                    ctype = prm.rsplit(" ", 1)[0].removeprefix("const ")
                    if "*" in prm:
                        kinds.append("p")
                    elif ctype in _ARG_KINDS:
                        kinds.append(_ARG_KINDS[ctype])
                    else:
                        _fail(f"entry point {name}: parameter {prm!r}: a by-value parameter must be one of "
                              f"{', '.join(_ARG_KINDS)}", "use one of those, or a pointer")
                if name in out:
                    _fail(f"entry point {name} is also declared in {out[name][0]}", "give it another name")
                out[name] = (entry, tuple(kinds))
    return out


# Every entry point's file and argument kinds: "p" pointer, "u64", "i64", "i32", "f32" (parsed from the
# MCP_KERNEL declarations; tests/engine/test_cuda_emulated.py checks them with a second parser).
ENTRY_POINTS: dict[str, tuple[str, tuple[str, ...]]] = parse_entry_points()
