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
    float hard_max;    /* majorant of the nonelastic + p-p elastic + nuclear elastic mass cross section (all
                          "hard" nuclear events), cm2/g, over the energies one step from here can reach */
};

/* The CSDA range inside table bin i, where the total stopping power is the power law through the bin's end
 * values (S ~ E^-k): R(E_i e^(f dlnE)) = R_i + (R_(i+1) - R_i) f h(b f) / h(b), h(x) = (e^x - 1)/x,
 * b = (1 + k) dlnE (column COL_RANGE_B; the table builder, mcproton/_physics/tables.py, integrates the same
 * law, so the nodes agree).  Unlike R linear in ln E, this makes the stopping power implied by the range
 * table continuous and equal to the tabulated one at every node (no +-0.9 % ripple of the dose along short
 * steps).  |b| < 0.05 (checked by the builder): the series below are accurate to 1e-7. */
MCP_FORCEINLINE MCP_HOST_DEVICE float expm1_over_x(float x)
{
    return 1.0f + x * (0.5f + x * (0.16666667f + x * (0.041666667f + x * 0.0083333333f)));
}

MCP_FORCEINLINE MCP_HOST_DEVICE float log1p_over_x(float x)
{
    return 1.0f + x * (-0.5f + x * (0.33333333f + x * (-0.25f + x * 0.2f)));
}

MCP_FORCEINLINE MCP_HOST_DEVICE EnergyPoint lookup_energy(const Params& p, int mat, float energy)
{
    EnergyPoint e;
    e.row = p.tables.energy_table + (int64_t)mat * p.tables.n_e * N_ENERGY_COLUMNS;
    e.g = log_grid_point(energy, p.tables.log_e_min, p.tables.inv_dlog_e, p.tables.n_e);
    {
        const float* r = e.row + e.g.index * N_ENERGY_COLUMNS;
        const float b = r[COL_RANGE_B];
        e.range = r[COL_RANGE] + (r[N_ENERGY_COLUMNS + COL_RANGE] - r[COL_RANGE]) * e.g.frac *
                                     expm1_over_x(b * e.g.frac) / expm1_over_x(b);
    }
    e.stop = lerp_row(e.row, e.g, N_ENERGY_COLUMNS, COL_STOP);
    e.hard_max = lerp_row(e.row, e.g, N_ENERGY_COLUMNS, COL_HARD_SIGMA_MAX);
    return e;
}

/* Electronic mass stopping power (MeV cm2/g) of material `mat` at kinetic energy `energy`. */
MCP_FORCEINLINE MCP_HOST_DEVICE float stopping_at(const Params& p, int mat, float energy)
{
    const float* row = p.tables.energy_table + (int64_t)mat * p.tables.n_e * N_ENERGY_COLUMNS;
    const GridPoint g = log_grid_point(mcp_max(energy, 1e-3f), p.tables.log_e_min, p.tables.inv_dlog_e,
                                       p.tables.n_e);
    return lerp_row(row, g, N_ENERGY_COLUMNS, COL_STOP);
}

MCP_FORCEINLINE MCP_HOST_DEVICE float energy_column(const EnergyPoint& e, int col)
{
    return lerp_row(e.row, e.g, N_ENERGY_COLUMNS, col);
}

/* InverseRangeCalculator: kinetic energy whose CSDA range in material `mat` is `range_g_cm2`.
 * This is the exact inverse of the forward lookup (the power-law bins of lookup_energy), so that a
 * step's energy loss E - E(R(E) - rho s) carries no bias from interpolating two separate tables. */
MCP_FORCEINLINE MCP_HOST_DEVICE float energy_from_range(const Params& p, int mat, float range_g_cm2)
{
    const float* row = p.tables.energy_table + (int64_t)mat * p.tables.n_e * N_ENERGY_COLUMNS;
    float t = (mcp_log(range_g_cm2) - p.tables.log_r_min) * p.tables.inv_dlog_r;
    t = mcp_min(mcp_max(t, 0.0f), (float)(p.tables.n_r - 1));
    int i = p.tables.range_index[(int64_t)mat * p.tables.n_r + (int)t];
    while (i < p.tables.n_e - 2 && row[(i + 1) * N_ENERGY_COLUMNS + COL_RANGE] <= range_g_cm2) ++i;
    const float r0 = row[i * N_ENERGY_COLUMNS + COL_RANGE];
    const float r1 = row[(i + 1) * N_ENERGY_COLUMNS + COL_RANGE];
    const float b = row[i * N_ENERGY_COLUMNS + COL_RANGE_B];
    /* invert R_i + (R_(i+1) - R_i) f h(b f) / h(b) = R:  b f = log1p(b q) with q = (R - R_i) h(b) / (R_(i+1) - R_i) */
    const float q = (range_g_cm2 - r0) / (r1 - r0) * expm1_over_x(b);
    const float f = mcp_min(mcp_max(q * log1p_over_x(b * q), 0.0f), 1.0f);
    return mcp_exp(p.tables.log_e_min + ((float)i + f) * p.tables.dlog_e);
}

MCP_FORCEINLINE MCP_HOST_DEVICE float material_prop(const Params& p, int mat, int col)
{
    return p.tables.material_props[mat * N_MATERIAL_COLUMNS + col];
}
