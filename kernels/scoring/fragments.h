/* \file scoring/fragments.h
 * Charged fragments of a nonelastic event that are not transported (alphas, deuterons, the recoiling nucleus):
 * their energy is laid along a straight track in an isotropic direction, uniformly per mass thickness over
 * their CSDA range, wherever that range is longer than half a voxel (gas; lung at fine voxels); otherwise it is
 * deposited where the event happened.  In tissue the ranges are microns (a 5 MeV alpha: 37 um of water) and
 * nothing changes; in air they are centimetres (the same alpha: 3.4 cm here, 3.6 cm in NIST ASTAR), and depositing them in one
 * 10-microgram air voxel made dose-to-air spikes of twice the mean dose next to the beam (docs/physics.md).
 * Range at the same velocity from the proton table of the event's material: R(T) = (M / Z^2) R_p(T / M), M in
 * proton masses (alpha 4 / 2, deuteron 2 / 1, recoil taken as 14N, 14 / 7: light target nuclei; its effective
 * charge is ignored, which shortens a slow recoil's range).  Dose to water uses the event medium's
 * stopping-power ratio.
 */
#pragma once
#include "../random/rng.h"
#include "../geometry/voxel_grid.h"
#include "../physics/material_tables.h"
#include "dose.h"

/* longest walk: 20 MeV deuterons go 2 m in air, 4000 voxels of 0.5 mm; beyond, the rest is put in the last voxel */
#define MCP_FRAGMENT_MAX_VOXELS 16384

/* Deposit a fragment of kinetic energy `energy` (MeV), mass `mass` (proton masses) and charge squared `z2`
 * born at (x, y, z) in voxel `vox` of material `mat`; returns the energy that left the grid (MeV). */
MCP_FORCEINLINE MCP_HOST_DEVICE float deposit_fragment(const Params& p, const Scorer& sc, float x, float y, float z,
                                                       int64_t vox, int mat, float energy, float mass, float z2,
                                                       float spr_w, Rng& rng)
{
    if (energy <= 0.0f) return 0.0f;
    const float r_mass = mass / z2 * lookup_energy(p, mat, mcp_max(energy / mass, 0.011f)).range;   /* g/cm2 */
    VoxelIndex vi;
    if (r_mass <= p.grid.density[vox] * 0.5f * mcp_min(p.grid.vx, mcp_min(p.grid.vy, p.grid.vz))
        || !locate(p, x, y, z, vi)) {
        score_local(sc, vox, energy, spr_w);
        return 0.0f;
    }
    const float cw = 2.0f * rng_uniform(rng) - 1.0f;
    const float sw = mcp_sqrt(mcp_max(1.0f - cw * cw, 0.0f));
    float sphi, cphi;
    mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
    const float u = sw * cphi, v = sw * sphi, w = cw;
    VoxelWalk wk = walk_begin(p, vi, linear_index(p, vi), x, y, z, u, v, w);
    float m = 0.0f, s0 = 0.0f, left = energy;
    for (int k = 0; k < MCP_FRAGMENT_MAX_VOXELS; ++k) {
        int ax;
        const float s1 = walk_exit(wk, ax);
        const float dm = p.grid.density[wk.vox] * (s1 - s0);
        if (m + dm >= r_mass) break;
        const float e = energy * dm / r_mass;
        if (e > 0.0f) { score_local(sc, wk.vox, e, spr_w); left -= e; }
        m += dm;
        s0 = s1;
        if (!walk_next(p, wk, ax, ax == 0 ? u : (ax == 1 ? v : w))) return left;
    }
    score_local(sc, wk.vox, left, spr_w);
    return 0.0f;
}
