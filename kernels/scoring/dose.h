/* \file scoring/dose.h
 * Scorers: energy deposited (-> dose to medium), energy x stopping-power ratio water/medium (-> dose to
 * water, Paganetti 2009 PMB 54:4399 convention D_w = D_m s_w,m), and the proton-only energy and
 * energy x LET sums (-> dose-averaged LET of protons, unrestricted electronic LET in the voxel medium).
 * All are fixed-point 64-bit integers (see params.h).
 */
#pragma once
#include "../params.h"

MCP_FORCEINLINE MCP_HOST_DEVICE void score_proton_step(const Params& p, int64_t voxel, float edep_mev,
                                                       float spr_w, float let_kev_um)
{
    const int64_t e = mcp_llrint(edep_mev * MCP_TALLY_SCALE);
    mcp_atomic_add(p.edep + voxel, e);
    mcp_atomic_add(p.edep_proton + voxel, e);
    mcp_atomic_add(p.edep_water + voxel, mcp_llrint(edep_mev * spr_w * MCP_TALLY_SCALE));
    mcp_atomic_add(p.let_num + voxel, mcp_llrint(edep_mev * let_kev_um * MCP_LET_SCALE));
}

/* Local deposit of heavy fragments (no LET contribution: LET_d is that of protons). */
MCP_FORCEINLINE MCP_HOST_DEVICE void score_local(const Params& p, int64_t voxel, float edep_mev, float spr_w)
{
    mcp_atomic_add(p.edep + voxel, mcp_llrint(edep_mev * MCP_TALLY_SCALE));
    mcp_atomic_add(p.edep_water + voxel, mcp_llrint(edep_mev * spr_w * MCP_TALLY_SCALE));
}

MCP_FORCEINLINE MCP_HOST_DEVICE int64_t ledger_units(float mev) { return mcp_llrint(mev * MCP_TALLY_SCALE); }
