/* \file physics/material_tables.h
 * Named calculators over the per-material tables built by mcproton/_physics/tables.py.
 */
#pragma once
#include "../grid/table_lookup.h"
#include "../params.h"

/* Interpolated electromagnetic and nuclear quantities of one material at one kinetic energy. */
struct EnergyPoint {
    GridPoint g;
    const float* row;  /* start of this material's energy table */
    float range;       /* CSDA range, g/cm2 */
    float stop;        /* electronic mass stopping power, MeV cm2/g */
    float nuc_sigma;   /* nonelastic + p-p elastic + nuclear elastic mass cross section, cm2/g (all "hard"
                          nuclear events) */
};

MCP_FORCEINLINE MCP_HOST_DEVICE EnergyPoint lookup_energy(const Params& p, int mat, float energy)
{
    EnergyPoint e;
    e.row = p.energy_table + (int64_t)mat * p.n_e * N_ENERGY_COLUMNS;
    e.g = log_grid_point(energy, p.log_e_min, p.inv_dlog_e, p.n_e);
    e.range = lerp_row(e.row, e.g, N_ENERGY_COLUMNS, COL_RANGE);
    e.stop = lerp_row(e.row, e.g, N_ENERGY_COLUMNS, COL_STOP);
    e.nuc_sigma = lerp_row(e.row, e.g, N_ENERGY_COLUMNS, COL_HARD_SIGMA);
    return e;
}

/* Electronic mass stopping power (MeV cm2/g) of material `mat` at kinetic energy `energy`. */
MCP_FORCEINLINE MCP_HOST_DEVICE float stopping_at(const Params& p, int mat, float energy)
{
    const float* row = p.energy_table + (int64_t)mat * p.n_e * N_ENERGY_COLUMNS;
    const GridPoint g = log_grid_point(mcp_max(energy, 1e-3f), p.log_e_min, p.inv_dlog_e, p.n_e);
    return lerp_row(row, g, N_ENERGY_COLUMNS, COL_STOP);
}

MCP_FORCEINLINE MCP_HOST_DEVICE float energy_column(const EnergyPoint& e, int col)
{
    return lerp_row(e.row, e.g, N_ENERGY_COLUMNS, col);
}

/* InverseRangeCalculator: kinetic energy whose CSDA range in material `mat` is `range_g_cm2`.
 * This is the exact inverse of the forward lookup (range linear in ln E between table nodes), so that a
 * step's energy loss E - E(R(E) - rho s) carries no bias from interpolating two separate tables. */
MCP_FORCEINLINE MCP_HOST_DEVICE float energy_from_range(const Params& p, int mat, float range_g_cm2)
{
    const float* row = p.energy_table + (int64_t)mat * p.n_e * N_ENERGY_COLUMNS;
    float t = (mcp_log(range_g_cm2) - p.log_r_min) * p.inv_dlog_r;
    t = mcp_min(mcp_max(t, 0.0f), (float)(p.n_r - 1));
    int i = p.range_index[(int64_t)mat * p.n_r + (int)t];
    while (i < p.n_e - 2 && row[(i + 1) * N_ENERGY_COLUMNS + COL_RANGE] <= range_g_cm2) ++i;
    const float r0 = row[i * N_ENERGY_COLUMNS + COL_RANGE];
    const float r1 = row[(i + 1) * N_ENERGY_COLUMNS + COL_RANGE];
    const float f = mcp_min(mcp_max((range_g_cm2 - r0) / (r1 - r0), 0.0f), 1.0f);
    return mcp_exp(p.log_e_min + ((float)i + f) * p.dlog_e);
}

MCP_FORCEINLINE MCP_HOST_DEVICE float material_prop(const Params& p, int mat, int col)
{
    return p.material_props[mat * N_MATERIAL_COLUMNS + col];
}
