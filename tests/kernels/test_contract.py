"""The kernel/Python contract has one source, kernels/params.h (and source/spot.h; issue 16): the Python side
parses its lists, the compiler agrees with what it parsed, and the parser refuses what it does not
understand."""
from __future__ import annotations

import re

import numpy as np
import pytest

from mcproton._backend import get_backend
from mcproton._kernels import layout
from mcproton._kernels.layout import KernelContractError, contract_probe_expected, parse_header
from mcproton._kernels.source import kernels_dir

HEADER = (kernels_dir() / "params.h").read_text()


def test_compiled_lists_equal_the_parsed_ones(backend):
    """mcp_probe_contract prints what the compiler made of every list and constant of params.h."""
    b = get_backend(backend)
    exp = contract_probe_expected()
    out = b.zeros(len(exp), np.int64)
    b.launch("mcp_probe_contract", 1, out)
    got = b.to_host(out).tolist()
    assert got == exp, f"params.h compiled (kernel) vs parsed (layout.py):\n{got}\n{exp}"


def test_the_contract_the_run_relies_on():
    """A few values the stored regression files and the host code depend on, read through the parser."""
    assert layout.LEDGER["incident"] == 0 and layout.LEDGER["steps"] == 10 and layout.N_LEDGER == 16
    assert [e.name for e in layout.LEDGER_ENTRIES if e.kind == "energy_out"] == \
        ["deposited", "escaped", "missed", "neutral", "shifter"]
    assert layout.ENERGY_COLUMNS["hard_sigma_max"] == 12 and layout.ENERGY_COLUMNS["let_end"] == 13
    assert layout.N_ENERGY_COLUMNS == 16
    assert layout.FLAGS == {"straggling": 1, "msc": 2, "nuclear": 4, "shared_tally": 8}
    assert layout.TALLY_SCALE == 2.0**24 and layout.LET_SCALE == 2.0**16
    assert layout.PARAMS_DTYPE.names == ("tables", "grid", "source", "tallies", "options")
    assert [r.ctype for r in layout.PARAMS_ROLE_INFO] == \
        ["TableParams", "GridParams", "SourceParams", "TallyParams", "OptionParams"]
    assert layout.PARAMS_DTYPE["tables"].names[:3] == ("energy_table", "range_index", "material_props")
    assert layout.PARAMS_DTYPE["options"]["seed"] == np.uint64
    assert layout.PARAMS_DTYPE["tallies"]["touched"] == np.uint64
    assert layout.PARAMS_CTYPES["spots"] == "const Spot*"
    for role, fields in layout.PARAMS_ROLES.items():
        assert layout.PARAMS_DTYPE[role].names == fields


def test_parsing_a_copy_of_the_header_gives_the_module_values(tmp_path):
    p = tmp_path / "params.h"
    p.write_text(HEADER)
    c = parse_header(p)
    assert c["params_dtype"] == layout.PARAMS_DTYPE and c["ledger_entries"] == layout.LEDGER_ENTRIES


def _edited(tmp_path, old: str, new: str):
    assert HEADER.count(old) == 1, old
    p = tmp_path / "params.h"
    p.write_text(HEADER.replace(old, new))
    return p


# (what is edited, into what, a phrase the error must hold)
BAD_EDITS = [
    ('X(STEPS, steps, 10, count, "transport steps")', 'X(STEPS, steps, 10, "transport steps")',
     "MCP_LEDGER_ENTRIES: cannot parse"),
    ('X(STEPS, steps, 10, count,', 'X(STEPS, steps, 9, count,', "repeats"),
    ('X(STEPS, steps, 10, count,', 'X(STEPS, step, 10, count,', "NAME in lower case"),
    ('X(STEPS, steps, 10, count,', 'X(STEPS, steps, 16, count,', "outside 0..15"),
    ('X(INCIDENT, incident, 0, energy_in,', 'X(INCIDENT, incident, 0, energy_out,', "exactly one energy_in"),
    ('X(MULT_D, 7,', 'X(MULT_D, 6,', "MCP_ENERGY_COLUMNS: MULT_D = 6 repeats"),
    ('X(EL_A, 3,', 'X(EL_A, 4,', "outside 0..3"),
    ('X(NUCLEAR, 4,', 'X(NUCLEAR, 6,', "not a distinct single bit"),
    ('X(float, e_cut, "cut-off energy, MeV")', 'X(double, e_cut, "cut-off energy, MeV")',
     "MCP_PARAMS_OPTIONS: cannot parse"),
    ('X(float, e_cut, "cut-off energy, MeV")', 'X(const float, e_cut, "cut-off energy, MeV")',
     "by-value field"),
    ('    X(int32_t, pad_grid, "padding (GridParams to a multiple of 8 bytes)")', '',
     "struct GridParams (MCP_PARAMS_GRID) would have implicit padding"),
    ('X(uint64_t, seed, "random seed")', 'X(float, seed, "random seed")', "padding between its roles"),
    ('X(float, vx, "voxel size x, cm")', 'X(float, vy, "voxel size x, cm")', "declared twice"),
    ('X(int32_t, n_spots, "spots")', 'X(int32_t, nx, "spots")', "MCP_PARAMS_SOURCE: field nx declared twice"),
    ('X(int32_t, pad_grid,', 'X(int32_t, source,', "named like a role"),
    ("#define MCP_TALLY_SCALE 16777216.0f", "#define MCP_TALLY_SCALE (1 << 24)", "MCP_TALLY_SCALE <number>"),
    ("#define MCP_FLAGS(X) \\", "#define MCP_FLAG_LIST(X) \\", "expected one `#define MCP_FLAGS(X)`"),
    ("X(GridParams, grid, MCP_PARAMS_GRID,", "X(GridParams, grid, MCP_PARAMS_TABLES,",
     "name a role's list after its member: MCP_PARAMS_GRID"),
    ("X(GridParams, grid, MCP_PARAMS_GRID,", "X(TableParams, grid, MCP_PARAMS_GRID,",
     "repeats a member or a struct"),
    ("X(GridParams, grid, MCP_PARAMS_GRID,", "X(GridParams, grid, MCP_PARAMS_GRID, MCP_PARAMS_TABLES,",
     "MCP_PARAMS_ROLES: cannot parse"),
]


@pytest.mark.parametrize("old,new,phrase", BAD_EDITS, ids=[re.sub(r"\W+", "_", e[2])[:40] for e in BAD_EDITS])
def test_the_parser_refuses_what_it_does_not_understand(tmp_path, old, new, phrase):
    with pytest.raises(KernelContractError, match=re.escape(phrase)) as e:
        parse_header(_edited(tmp_path, old, new))
    assert "kernels/params.h" in str(e.value)


def test_an_added_ledger_entry_reaches_the_python_side(tmp_path):
    """Adding a counter is one line in params.h (plus the kernel line that counts it): no Python edit."""
    p = _edited(tmp_path,
                '"primaries that end in a range shifter: stopped or nonelastic " \\\n      "event")',
                '"primaries that end in a range shifter: stopped or nonelastic " \\\n      "event") \\\n'
                '    X(DELTA_RAYS, delta_rays, 15, count, "a new counter")')
    c = parse_header(p)
    assert c["ledger_entries"][-1] == layout.LedgerEntry("delta_rays", 15, "count", "a new counter")


def test_field_names_are_unique_across_the_roles():
    """The Python side addresses a Params field by its name alone (p["nx"]): no name twice, none named like a
    role (the parser refuses both, BAD_EDITS above)."""
    names = [f for fields in layout.PARAMS_ROLES.values() for f in fields]
    assert len(names) == len(set(names)) == len(layout.PARAMS_FIELD_ROLE) == 43
    assert not set(names) & set(layout.PARAMS_ROLES)
    assert layout.PARAMS_FIELD_ROLE["nx"] == "grid" and layout.PARAMS_FIELD_ROLE["seed"] == "options"


def _offset(name: str) -> int:
    role = layout.PARAMS_FIELD_ROLE[name]
    return layout.PARAMS_DTYPE.fields[role][1] + layout.PARAMS_DTYPE[role].fields[name][1]


def test_params_view_writes_each_field_at_its_nested_place():
    p = layout.new_params()
    for i, name in enumerate(layout.PARAMS_FIELD_ROLE, 1):
        p[name] = i
    raw = p.view(np.uint8)
    assert raw.shape == (layout.PARAMS_DTYPE.itemsize,)
    for i, (name, role) in enumerate(layout.PARAMS_FIELD_ROLE.items(), 1):
        assert p[name][0] == i and p.array[role][name][0] == i
        dt = layout.PARAMS_DTYPE[role].fields[name][0]
        assert raw[_offset(name):_offset(name) + dt.itemsize].view(dt)[0] == i, name
    p["nx"], p["ny"] = 3, 4                     # the fill code's tuple assignments
    assert (p["nx"][0], p["ny"][0]) == (3, 4)
    q = p.copy()
    q["nx"] = 7
    assert p["nx"][0] == 3 and q["nx"][0] == 7 and "nx" in p and "grid" not in p


@pytest.mark.parametrize("name", ["nxx", "grid", "pad1"])
def test_params_view_refuses_a_name_that_is_no_field(name):
    p = layout.new_params()
    with pytest.raises(KeyError, match=rf"struct Params has no field '{name}' .*use one of: energy_table, "):
        p[name] = 1
    with pytest.raises(layout.UnknownParamsField):
        p[name]
    assert not p.view(np.uint8).any()


SPOT_HEADER = (kernels_dir() / "source" / "spot.h").read_text()


def test_spot_dtype_is_parsed_from_spot_h():
    """struct Spot is written once (kernels/source/spot.h MCP_SPOT_FIELDS); mcproton.source re-exports the
    mirror the contract parser builds from it, with the same field names as the kernels."""
    from mcproton import source
    assert source.SPOT_DTYPE is layout.SPOT_DTYPE
    assert layout.SPOT_DTYPE.names[:2] == ("pos_cm", "dir") and layout.SPOT_DTYPE["pos_cm"].shape == (3,)
    assert layout.SPOT_DTYPE["rs_material"] == np.int32 and layout.SPOT_DTYPE.itemsize == 96


@pytest.mark.parametrize("old,new,phrase", [
    ('X(float, corr, 2,', 'X(double, corr, 2,', "MCP_SPOT_FIELDS: cannot parse"),
    ('X(float, corr, 2,', 'X(float, corr, 4,', "MCP_SPOT_FIELDS: cannot parse"),
    ('X(float, corr, 2,', 'X(float, dir, 2,', "field dir declared twice"),
], ids=["type", "count", "twice"])
def test_the_spot_parser_refuses_what_it_does_not_understand(tmp_path, old, new, phrase):
    assert SPOT_HEADER.count(old) == 1
    p = tmp_path / "spot.h"
    p.write_text(SPOT_HEADER.replace(old, new))
    with pytest.raises(KernelContractError, match=re.escape(phrase)) as e:
        layout.parse_spot_header(p)
    assert "kernels/source/spot.h" in str(e.value)


def test_entry_points_are_parsed_from_the_kernel_declarations():
    """Adding a probe is its MCP_KERNEL declaration in probes.cu: no Python edit."""
    assert layout.ENTRY_POINTS["mcp_transport"] == ("transport.cu", ("p", "u64", "i64"))
    assert layout.ENTRY_POINTS["mcp_probe_stream"] == ("probes.cu", ("u64", "u64", "i32", "p", "i64", "i64"))
    assert len(layout.ENTRY_POINTS) == 12 and {f for f, _ in layout.ENTRY_POINTS.values()} == \
        {"transport.cu", "probes.cu"}


@pytest.mark.parametrize("old,new,phrase", [
    ("int64_t n_histories)", "double n_histories)", "parameter 'double n_histories'"),
    ("MCP_KERNEL void mcp_transport(", "MCP_KERNEL int mcp_transport(", "an MCP_KERNEL that is not"),
    ("MCP_KERNEL void mcp_transport(", "MCP_KERNEL void mcp_probe_pp(", "also declared in"),
], ids=["double", "not_void", "twice"])
def test_the_entry_point_parser_refuses_what_it_does_not_understand(tmp_path, old, new, phrase):
    for entry in ("transport.cu", "probes.cu"):
        text = (kernels_dir() / entry).read_text()
        if entry == "transport.cu":
            assert text.count(old) == 1
            text = text.replace(old, new)
        (tmp_path / entry).write_text(text)
    with pytest.raises(KernelContractError, match=re.escape(phrase)) as e:
        layout.parse_entry_points(tmp_path)
    assert "kernels/transport.cu" in str(e.value) or "kernels/probes.cu" in str(e.value)
