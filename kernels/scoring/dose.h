/* \file scoring/dose.h
 * Scorers: energy deposited (-> dose to medium), energy x stopping-power ratio water/medium (-> dose to
 * water, Paganetti 2009 PMB 54:4399 convention D_w = D_m s_w,m), and the proton-only energy and
 * energy x mass stopping power sums (-> dose-averaged LET of protons, unrestricted electronic LET in the voxel
 * medium: the host multiplies the mean mass stopping power by 0.1 x the voxel's density for keV/um).
 * All are fixed-point 64-bit integers (see params.h).
 */
#pragma once
#include "../params.h"

/* The tallies one thread writes to: on the CPU slot (thread % n_slots), private to the thread when memory
 * allows one slot per thread (plain adds, no cache-line contention between cores), else shared by a few
 * threads with atomic adds; on the GPU one shared tally with atomic adds.  Slots are summed as integers after
 * the launch, so the result is the same either way. */
struct Scorer {
    int64_t* edep;
    int64_t* edep_water;
    int64_t* edep_proton;
    int64_t* let_num;
    uint8_t* touched;   /* block flags (params.h), or null */
    int atomic;
};

MCP_FORCEINLINE MCP_HOST_DEVICE Scorer make_scorer(const Params& p)
{
    const int32_t n_slots = p.tallies.n_slots > 0 ? p.tallies.n_slots : 1;
    const int64_t off = p.tallies.tally_stride * (int64_t)(mcp_thread_slot() % n_slots);
    Scorer s;
    s.edep = p.tallies.edep + off;
    s.edep_water = p.tallies.edep_water + off;
    s.edep_proton = p.tallies.edep_proton + off;
    s.let_num = p.tallies.let_num + off;
    s.touched = p.tallies.touched;
    s.atomic = (p.options.flags & MCP_FLAG_SHARED_TALLY) != 0;
    return s;
}

MCP_FORCEINLINE MCP_HOST_DEVICE void tally_add(const Scorer& s, int64_t* addr, int64_t v)
{
    if (s.atomic) mcp_atomic_add(addr, v);
    else *addr += v;
}

/* Every scorer marks the voxel's block (the host reads back only marked blocks).  CPU only: the GPU sums
 * whole batches on the device (DeviceAccumulator) and would only pay for the flags (a byte store per deposit
 * and 2 registers, measured with nvcc 13.0 for sm_90). */
MCP_FORCEINLINE MCP_HOST_DEVICE void mark_touched(const Scorer& s, int64_t voxel)
{
#if MCP_DEVICE_COMPILE
    (void)s;
    (void)voxel;
#else
    if (s.touched) mcp_flag_set(s.touched + (voxel >> MCP_TOUCH_SHIFT));
#endif
}

/* A proton's deposit `edep_mev` in `voxel`, with its dose-to-water ratio `spr_w` and its LET as a mass electronic
 * stopping power `let_mass` (MeV cm2/g; the voxel's density makes it keV/um on the host). */
MCP_FORCEINLINE MCP_HOST_DEVICE void score_proton_step(const Scorer& sc, int64_t voxel, float edep_mev,
                                                       float spr_w, float let_mass)
{
    const int64_t e = mcp_llrint(edep_mev * MCP_TALLY_SCALE);
    mark_touched(sc, voxel);
    tally_add(sc, sc.edep + voxel, e);
    tally_add(sc, sc.edep_proton + voxel, e);
    tally_add(sc, sc.edep_water + voxel, mcp_llrint(edep_mev * spr_w * MCP_TALLY_SCALE));
    tally_add(sc, sc.let_num + voxel, mcp_llrint(edep_mev * let_mass * MCP_LET_SCALE));
}

/* Energy of heavy fragments and cut-off residues put into one voxel (no LET contribution: LET_d is that of
 * protons). */
MCP_FORCEINLINE MCP_HOST_DEVICE void score_local(const Scorer& sc, int64_t voxel, float edep_mev, float spr_w)
{
    mark_touched(sc, voxel);
    tally_add(sc, sc.edep + voxel, mcp_llrint(edep_mev * MCP_TALLY_SCALE));
    tally_add(sc, sc.edep_water + voxel, mcp_llrint(edep_mev * spr_w * MCP_TALLY_SCALE));
}

MCP_FORCEINLINE MCP_HOST_DEVICE int64_t ledger_units(float mev) { return mcp_llrint(mev * MCP_TALLY_SCALE); }
