/* \file transport.cu
 * The transport kernel: the only file with production entry points (probes.cu holds test-only ones).
 *
 * A persistent, step-granular loop (mcp_transport): each thread runs one transport step of its current track per
 * iteration (track_step, over one TrackState) and, when the track ends, takes the next one at once: a secondary
 * of its history from its stack, else the next history from a shared counter (next_track).  The tracks:
 * condensed-history steps limited by the maximum fractional energy loss, the maximum step, the distance to
 * the next hard nuclear event (majorant sampling) and the first face of a voxel of another material; a step
 * runs on through voxels of the same material (geometry/voxel_grid.h VoxelWalk).  Per step: CSDA energy loss
 * from the range tables, Gaussian straggling, scoring shared among the voxels crossed, multiple Coulomb
 * scattering (angle and lateral displacement).
 * Physics models and their sources: docs/physics.md and the headers included below.
 */
#include "core/portability.h"
#include "random/rng.h"
#include "params.h"
#include "physics/material_tables.h"
#include "physics/kinematics.h"
#include "physics/straggling.h"
#include "physics/msc.h"
#include "physics/nuclear.h"
#include "geometry/voxel_grid.h"
#include "scoring/dose.h"
#include "scoring/fragments.h"
#include "source/sample.h"

#define MCP_MAX_STACK 16
#define MCP_MAX_STEPS 200000
/* Most voxels one step may cross (a guard for very small voxels; a step that reaches it ends at a face). */
#define MCP_MAX_SEGMENTS 64
/* Density below which a voxel is treated as vacuum (g/cm3). */
#define MCP_VACUUM_DENSITY 1e-6f
/* A step whose mass thickness is below this fraction of the residual CSDA range loses m S(E - m S(E) / 2) (the
 * midpoint rule, error O(m^3)), not E - E(R - m): in float32 the difference of two nearly equal ranges or energies
 * quantises a thin step's loss to ulps (R(250 MeV) = 38 g/cm2 has an ulp of 4e-6 g/cm2, 250 MeV one of 1.5e-5 MeV),
 * so the dose in air was off by up to 4 % per voxel at 250 MeV and by 0-54x below 1e-5 g/cm3 (transport audit
 * 2026-12-05, F2).  At 1e-3 R the midpoint rule is exact to ~1e-7 and the range difference to ~1e-4.  What remains
 * below 1e-5 g/cm3 is the fixed-point tally's rounding of each tiny deposit (about 0.1 % at 1e-5, 1 % at 1e-6 g/cm3,
 * just above the vacuum density). */
#define MCP_THIN_STEP_RANGE_FRACTION 1e-3f

struct Track {
    float x, y, z, u, v, w;
    float energy;
    uint32_t id;
};

/* One history-thread's ledger: a field per MCP_LEDGER_ENTRIES entry (params.h), flushed once per thread. */
struct HistoryLedger {
#define MCP_X_FIELD(NAME, name, index, kind, doc) int64_t name;
    MCP_LEDGER_ENTRIES(MCP_X_FIELD)
#undef MCP_X_FIELD
};

enum StepLimit { LIMIT_BOUNDARY = 0, LIMIT_PHYSICS = 1, LIMIT_NUCLEAR = 2 };

/* Two unit vectors perpendicular to (u, v, w) and to each other. */
MCP_FORCEINLINE MCP_HOST_DEVICE void transverse_basis(float u, float v, float w, float* e1, float* e2)
{
    const float s2 = u * u + v * v;
    if (s2 > 1e-12f) {
        const float inv = mcp_rsqrt(s2);
        const float s = s2 * inv;
        e1[0] = u * w * inv; e1[1] = v * w * inv; e1[2] = -s;
        e2[0] = -v * inv;    e2[1] = u * inv;     e2[2] = 0.0f;
    } else {
        e1[0] = 1.0f; e1[1] = 0.0f; e1[2] = 0.0f;
        e2[0] = 0.0f; e2[1] = (w > 0.0f ? 1.0f : -1.0f); e2[2] = 0.0f;
    }
}

/* A proton's whole remaining energy deposited in one voxel (a track that fell below the cut-off, or the sub-cut
 * products of a p-p elastic scattering), scored with the dose-averaged LET of the track it replaces: the mean
 * electronic stopping power over its last `energy` MeV (column LET_END), not S at `energy` (at 0.5 MeV in water
 * 59 against 41 keV/um), so that the LETd does not depend on the cut-off. */
MCP_FORCEINLINE MCP_HOST_DEVICE void deposit_local_proton(const Params& p, const Scorer& sc, int64_t vox, int mat, float energy)
{
    const EnergyPoint ep = lookup_energy(p, mat, mcp_max(energy, 1e-3f));
    score_proton_step(sc, vox, energy, energy_column(ep, COL_SPR_W), energy_column(ep, COL_LET_END));
}

/* Share a step's energy loss `de` among the n_seg voxels its chord crossed (replaying the walk `wk` from the
 * step's start), in proportion to the integral of the electronic stopping power over each voxel's share of the
 * step's mass thickness m.  Along the step S is the parabola in mass depth through s0 (start), sm (at mass
 * depth m/2, from the range table) and s1 (at the mean end energy): Simpson-exact, so that the dose of a long
 * step through many small voxels follows the rising stopping power (a straight line would move up to 0.5 % of
 * the energy towards the middle of 20 %-energy-loss steps).  Each voxel's LET is S at its segment's middle (a mass
 * stopping power: the host multiplies by the voxel's density).  One voxel: all of `de`, LET at the mean of s0 and s1. */
MCP_FORCEINLINE MCP_HOST_DEVICE void score_step_segments(const Params& p, const Scorer& sc, VoxelWalk wk, int n_seg,
                                                         float s, float rho0, float m, float de, float s0, float sm,
                                                         float s1, float spr_w, float u, float v, float w)
{
    if (n_seg == 1 || !(m > 0.0f)) {
        score_proton_step(sc, wk.vox, de, spr_w, 0.5f * (s0 + s1));
        return;
    }
    const float inv_m = 1.0f / m;
    const float a = (4.0f * sm - 3.0f * s0 - s1) * inv_m;            /* S(x) = s0 + a x + c x^2 */
    const float c = 2.0f * (s0 + s1 - 2.0f * sm) * inv_m * inv_m;
    const float norm = de * 6.0f / (m * (s0 + 4.0f * sm + s1));     /* de / (integral of S dm) */
    float left = de, t0 = 0.0f, x0 = 0.0f, rho_k = rho0;
    for (int k = 0; k < n_seg; ++k) {
        int ax;
        const bool last = k == n_seg - 1;
        const float t1 = last ? s : mcp_min(walk_exit(wk, ax), s);
        const float x1 = last ? m : mcp_min(x0 + rho_k * (t1 - t0), m);
        /* integral of S over [x0, x1] */
        const float dx = x1 - x0, sx = x1 + x0;
        const float integral = dx * (s0 + 0.5f * a * sx + c * (x1 * x1 + x1 * x0 + x0 * x0) * 0.33333333f);
        const float ek = last ? left : mcp_min(norm * integral, left);
        const float xm = 0.5f * sx;
        if (ek > 0.0f) score_proton_step(sc, wk.vox, ek, spr_w, s0 + xm * (a + c * xm));
        left -= ek;
        x0 = x1;
        t0 = t1;
        if (!last) {
            walk_next(p, wk, ax, ax == 0 ? u : (ax == 1 ? v : w));
            rho_k = p.grid.density[wk.vox];
        }
    }
}

/* The sampled energy loss (MeV) of a step of mass thickness m (g/cm2) in material `mat`, starting at `energy`
 * (ep = lookup_energy there): CSDA loss E - E(R(E) - m) from the range table (a thin step, below
 * MCP_THIN_STEP_RANGE_FRACTION of the range: m S at the midpoint energy), with Gaussian straggling.
 * Returns the mid-step energy (e_mid) and the stopping power at the mean end energy (s1) too. */
MCP_FORCEINLINE MCP_HOST_DEVICE float sample_step_loss(const Params& p, int mat, const EnergyPoint& ep, float energy,
                                                       float m, float& e_mid, float& s1, Rng& rng)
{
    float e_after, de_mean;
    if (m < MCP_THIN_STEP_RANGE_FRACTION * ep.range) {
        de_mean = m * stopping_at(p, mat, energy - 0.5f * m * ep.stop);
        e_after = energy - de_mean;
    } else {
        e_after = energy_from_range(p, mat, ep.range - m);
        de_mean = energy - e_after;
    }
    e_mid = energy - 0.5f * de_mean;
    s1 = stopping_at(p, mat, e_after);
    float de = de_mean;
    if (p.options.flags & MCP_FLAG_STRAGGLING) {
        /* The Bohr variance arises all along the step; an energy deviation that arises at mass depth x is
         * carried to the step's end scaled by S(end)/S(x) (CSDA).  With S linear in depth the mean of
         * S(end)^2/S(x)^2 over the step is S1/S0 exactly, so the variance sampled at the end is scaled by it.
         * Without this factor a step's contribution to the range straggling is weighted by 1/S(end)^2
         * instead of the step's mean of 1/S^2: 5 mm steps then gave a 0.8 % higher, narrower Bragg peak than
         * 0.5 mm steps; with it the peak does not depend on the step length. */
        const float var = bohr_variance_mev2(e_mid, material_prop(p, mat, MAT_Z_OVER_A), m) * (s1 / ep.stop);
        de = sample_energy_loss(de_mean, var, energy, rng_gauss(rng));
    }
    return de;
}

/* Move the track by a step of length s (cm) and mass thickness m (g/cm2) in material `mat`: with multiple
 * Coulomb scattering (msc.h; scattering power at the mid-step energy e_mid, track start p1v1) the deflection
 * and the correlated lateral displacement, otherwise a straight line. */
MCP_FORCEINLINE MCP_HOST_DEVICE void move_step(const Params& p, int mat, Track& t, float s, float m, float e_mid,
                                               float p1v1, Rng& rng)
{
    if (p.options.flags & MCP_FLAG_MSC) {
        const float T = scattering_power_dm(proton_pv(e_mid), p1v1, material_prop(p, mat, MAT_XS));
        const float sig = mcp_sqrt(T * m);
        const float z1 = rng_gauss(rng), z2 = rng_gauss(rng), z3 = rng_gauss(rng), z4 = rng_gauss(rng);
        const float tx = sig * z1, ty = sig * z2;
        const float dx = s * sig * (0.5f * z1 + 0.28867513f * z3);
        const float dy = s * sig * (0.5f * z2 + 0.28867513f * z4);
        float e1[3], e2[3];
        transverse_basis(t.u, t.v, t.w, e1, e2);
        t.x += s * t.u + dx * e1[0] + dy * e2[0];
        t.y += s * t.v + dx * e1[1] + dy * e2[1];
        t.z += s * t.w + dx * e1[2] + dy * e2[2];
        float u = t.u + tx * e1[0] + ty * e2[0];
        float v = t.v + tx * e1[1] + ty * e2[1];
        float w = t.w + tx * e1[2] + ty * e2[2];
        const float inv = mcp_rsqrt(u * u + v * v + w * w);
        t.u = u * inv; t.v = v * inv; t.w = w * inv;
    } else {
        t.x += s * t.u; t.y += s * t.v; t.z += s * t.w;
    }
}

/* Turn the track's direction by polar cosine ct and azimuth (cphi, sphi) in its transverse basis (e1, e2). */
MCP_FORCEINLINE MCP_HOST_DEVICE void deflect(Track& t, const float* e1, const float* e2, float ct, float cphi,
                                             float sphi)
{
    const float st = mcp_sqrt(mcp_max(1.0f - ct * ct, 0.0f));
    float u = ct * t.u + st * (cphi * e1[0] + sphi * e2[0]);
    float v = ct * t.v + st * (cphi * e1[1] + sphi * e2[1]);
    float w = ct * t.w + st * (cphi * e1[2] + sphi * e2[2]);
    const float inv = mcp_rsqrt(u * u + v * v + w * w);
    t.u = u * inv; t.v = v * inv; t.w = w * inv;
}

/* Put a secondary proton of energy e on the stack, emitted at polar cosine ct (relative to the track) and
 * azimuth given by (cphi, sphi) in the track's transverse basis; slow ones and overflow are local. */
MCP_FORCEINLINE MCP_HOST_DEVICE void emit_proton(const Params& p, const Track& t, const float* e1, const float* e2,
                                                 float e, float ct, float cphi, float sphi, Track* stack,
                                                 int& n_stack, uint32_t& next_id, HistoryLedger& L, float& local)
{
    if (e <= p.options.e_cut) { local += e; return; }
    if (n_stack >= MCP_MAX_STACK) { local += e; ++L.stack_full; return; }
    const float st = mcp_sqrt(mcp_max(1.0f - ct * ct, 0.0f));
    Track s;
    s.x = t.x; s.y = t.y; s.z = t.z;
    s.u = ct * t.u + st * (cphi * e1[0] + sphi * e2[0]);
    s.v = ct * t.v + st * (cphi * e1[1] + sphi * e2[1]);
    s.w = ct * t.w + st * (cphi * e1[2] + sphi * e2[2]);
    s.energy = e;
    s.id = next_id++;
    stack[n_stack++] = s;
    ++L.secondaries;
}

/* A hard nuclear event at the track's position: elastic scattering on hydrogen (p-p), nuclear elastic
 * scattering on a heavier nucleus, or a nonelastic reaction (nuclear.h), chosen by their cross sections.
 * Returns true when the track goes on (a null event of the majorant sampling, or nuclear elastic: the proton
 * is deflected and slowed by the recoil energy, which is deposited here); otherwise the incoming track ends and
 * its products go on the stack.
 * p-p elastic: isotropic in the centre-of-mass system (nearly so at 30-300 MeV, SAID), relativistic kinematics
 * of equal masses: T1 = T (1 + cos theta_cm) / 2, T2 = T - T1, lab angles from pp_elastic_cos_lab (kinematics.h),
 * the two protons at opposite azimuths. */
MCP_RARE MCP_HOST_DEVICE bool nuclear_event(const Params& p, const Scorer& sc, Track& t, int64_t vox, int mat,
                                                   float sigma_max, Rng& rng, Track* stack, int& n_stack,
                                                   uint32_t& next_id, HistoryLedger& L)
{
    const EnergyPoint ep = lookup_energy(p, mat, t.energy);
    /* Null-collision method: the event was sampled with the majorant sigma_max of the step's start; it is
     * real with probability sigma(E) / sigma_max at the energy it happens at, else nothing happens. */
    const float pick = rng_uniform(rng) * sigma_max;
    if (pick >= energy_column(ep, COL_HARD_SIGMA)) return true;
    const float sig_pp = energy_column(ep, COL_PP_SIGMA);
    const float sig_el = energy_column(ep, COL_EL_SIGMA);
    float e1[3], e2[3];
    transverse_basis(t.u, t.v, t.w, e1, e2);
    float local = 0.0f;
    float sphi, cphi;
    mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
    if (pick >= sig_pp && pick < sig_pp + sig_el) {
        const ElasticOutcome el = sample_nuclear_elastic(t.energy, material_prop(p, mat, MAT_EL_A), rng);
        deflect(t, e1, e2, el.cos_theta, cphi, sphi);
        t.energy -= el.t_recoil;
        score_local(sc, vox, el.t_recoil, energy_column(ep, COL_SPR_W));
        ++L.nuclear_elastic;
        return true;
    }
    if (pick < sig_pp) {
        const float t1 = 0.5f * t.energy * (1.0f + (2.0f * rng_uniform(rng) - 1.0f));
        const float t2 = t.energy - t1;
        emit_proton(p, t, e1, e2, t1, pp_elastic_cos_lab(t1, t.energy), cphi, sphi, stack, n_stack, next_id, L, local);
        emit_proton(p, t, e1, e2, t2, pp_elastic_cos_lab(t2, t.energy), -cphi, -sphi, stack, n_stack, next_id, L,
                    local);
        if (local > 0.0f) deposit_local_proton(p, sc, vox, mat, local);
        ++L.pp_elastic;
        return false;
    }
    const NuclearProducts np = sample_nonelastic(t.energy, energy_column(ep, COL_MULT_P),
                                                 energy_column(ep, COL_FRAC_RECOIL),
                                                 energy_column(ep, COL_MULT_ALPHA), energy_column(ep, COL_MULT_D), rng);
    local = np.local;
    for (int k = 0; k < np.n_p; ++k) {
        emit_proton(p, t, e1, e2, np.energy_p[k], np.cos_p[k], cphi, sphi, stack, n_stack, next_id, L, local);
        mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
    }
    const float spr_w = energy_column(ep, COL_SPR_W);
    float out_of_grid = deposit_fragment(p, sc, t.x, t.y, t.z, vox, mat, np.recoil, 14.0f, 49.0f, spr_w, rng);
    for (int k = 0; k < np.n_frag; ++k) {
        const bool alpha = (np.frag_alpha >> k) & 1;
        out_of_grid += deposit_fragment(p, sc, t.x, t.y, t.z, vox, mat, np.frag_e[k], alpha ? 4.0f : 2.0f,
                                        alpha ? 4.0f : 1.0f, spr_w, rng);
    }
    L.escaped += ledger_units(out_of_grid);
    score_local(sc, vox, local, spr_w);
    L.neutral += ledger_units(np.neutral);
    ++L.nuclear_events;
    return false;
}

/* The state of one track in flight, all that one transport step reads and writes (the seam of the step phases
 * below and of the persistent loop of mcp_transport): the track itself, its random stream, its voxel, the
 * scattering power's reference p1v1 (at the track's start), the mean free paths left to the next hard nuclear
 * event, and the loop iterations so far (the MCP_MAX_STEPS guard). */
struct TrackState {
    Track t;
    Rng rng;
    VoxelIndex vi;
    float p1v1, nuc_left;
    int iterations;
};

/* Phase 0, a track's start: locate it in the grid and open its random stream (seed, history, track id).
 * Returns false when it starts outside the grid (its energy escapes). */
MCP_FORCEINLINE MCP_HOST_DEVICE bool track_begin(const Params& p, const Track& t, uint64_t history, TrackState& ts,
                                                 HistoryLedger& L)
{
    ts.t = t;
    if (!locate(p, t.x, t.y, t.z, ts.vi)) {
        L.escaped += ledger_units(t.energy);
        return false;
    }
    rng_init(ts.rng, p.options.seed, history, t.id);
    ts.p1v1 = proton_pv(t.energy);
    ts.nuc_left = (p.options.flags & MCP_FLAG_NUCLEAR) ? rng_exponential(ts.rng) : MCP_INFINITY;
    ts.iterations = 0;
    return true;
}

/* Phase 1 for a voxel of vacuum (density below MCP_VACUUM_DENSITY): fly straight to its far face and into the
 * next voxel.  Returns false when the track leaves the grid. */
MCP_RARE MCP_HOST_DEVICE bool cross_vacuum_voxel(const Params& p, TrackState& ts, HistoryLedger& L)
{
    Track& t = ts.t;
    const VoxelExit ex = voxel_exit(p, ts.vi, t.x, t.y, t.z, t.u, t.v, t.w);
    const float d_vox = ex.distance;
    t.x += d_vox * t.u; t.y += d_vox * t.v; t.z += d_vox * t.w;
    const float dir = ex.axis == 0 ? t.u : (ex.axis == 1 ? t.v : t.w);
    cross_face(p, ts.vi, ex.axis, dir, t.x, t.y, t.z);
    const VoxelIndex from = ts.vi;
    if (!locate_across(p, from, ex.axis, dir, t.x, t.y, t.z, ts.vi)) {
        L.escaped += ledger_units(t.energy);
        return false;
    }
    return true;
}

/* What phase 1 decides for a step: its length s (cm) and mass thickness m (g/cm2), what limits it, the voxels its
 * chord crosses (n_seg, replayed from walk0 when the energy loss is shared), and where it ends. */
struct StepPlan {
    VoxelWalk walk0;
    VoxelIndex v_end;
    int64_t vox_end;
    float s, m;
    int n_seg, limit, end_axis;
};

/* Phase 1, the step limit and the voxel walk.  Step limits in mass thickness (g/cm2): the energy-loss fraction and
 * the next hard nuclear event; in length: the maximum step.  The step runs on through neighbouring voxels of the
 * same material (any density: the physics is in mass thickness) and ends at the first face of a voxel of another
 * material, of vacuum or of the grid (LIMIT_BOUNDARY). */
MCP_FORCEINLINE MCP_HOST_DEVICE StepPlan plan_step(const Params& p, const TrackState& ts, int64_t vox, int mat,
                                                   float rho, const EnergyPoint& ep)
{
    const Track& t = ts.t;
    StepPlan sp;
    const float m_phys = p.options.max_eloss_fraction * t.energy / ep.stop;
    /* No hard nuclear event below a hydrogen-free material's thresholds (hard_max == 0): never 0/0 = NaN when the
     * exponential sample is exactly 0 (u == 1, once in 2^24 draws), which made every later step zero-length. */
    const float m_nuc = ep.hard_max > 0.0f ? ts.nuc_left / ep.hard_max : MCP_INFINITY;
    int limit = m_nuc < m_phys ? LIMIT_NUCLEAR : LIMIT_PHYSICS;
    const float m_lim = mcp_min(m_phys, m_nuc);
    sp.walk0 = walk_begin(p, ts.vi, vox, t.x, t.y, t.z, t.u, t.v, t.w);
    VoxelWalk wk = sp.walk0;
    float s = 0.0f, m = 0.0f, t0 = 0.0f, rho_k = rho;
    int n_seg = 0, end_axis = 0;
    for (;;) {
        int ax;
        const float t1 = walk_exit(wk, ax);
        ++n_seg;
        const float s_mass = t0 + (m_lim - m) / rho_k;  /* where the mass limit falls, if in this voxel */
        if (s_mass <= t1 || p.options.max_step <= t1) {
            if (p.options.max_step < s_mass) { s = p.options.max_step; limit = LIMIT_PHYSICS; }
            else s = s_mass;
            s = mcp_max(s, t0);
            m += rho_k * (s - t0);
            break;
        }
        m += rho_k * (t1 - t0);
        const VoxelWalk here = wk;
        const float dir = ax == 0 ? t.u : (ax == 1 ? t.v : t.w);
        if (n_seg >= MCP_MAX_SEGMENTS || !walk_next(p, wk, ax, dir)
            || p.grid.material_index[wk.vox] != mat
            || p.grid.density[wk.vox] < MCP_VACUUM_DENSITY) {
            wk = here;
            s = t1;
            limit = LIMIT_BOUNDARY;
            end_axis = ax;
            break;
        }
        rho_k = p.grid.density[wk.vox];
        t0 = t1;
    }
    sp.v_end = wk.v;
    sp.vox_end = wk.vox;
    sp.s = s;
    sp.m = m;
    sp.n_seg = n_seg;
    sp.limit = limit;
    sp.end_axis = end_axis;
    return sp;
}

/* Phase 2, the energy loss and its scoring: CSDA loss through the range table with straggling, shared among the
 * voxels of the step (score_step_segments).  Returns the mid-step energy (for the scattering power); the track's
 * energy and nuclear path are updated.  Returns false when the proton stops within the step (only for a residual
 * range of microns, since a step loses at most max_eloss_fraction of the energy): its residual energy is
 * deposited here. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool lose_energy(const Params& p, const Scorer& sc, TrackState& ts, const StepPlan& sp,
                                                 int64_t vox, int mat, float rho, const EnergyPoint& ep, float& e_mid)
{
    Track& t = ts.t;
    const float m = sp.m;
    const float r_after = ep.range - m;
    if (r_after <= material_prop(p, mat, MAT_RANGE_CUT)) {
        /* the rest of the track, all here: its dose-averaged LET (as deposit_local_proton) */
        score_proton_step(sc, vox, t.energy, energy_column(ep, COL_SPR_W), energy_column(ep, COL_LET_END));
        return false;
    }
    float s1;
    const float de = sample_step_loss(p, mat, ep, t.energy, m, e_mid, s1, ts.rng);
    {
        const float sm = sp.n_seg > 1 ? stopping_at(p, mat, energy_from_range(p, mat, ep.range - 0.5f * m)) : 0.0f;
        score_step_segments(p, sc, sp.walk0, sp.n_seg, sp.s, rho, m, de, ep.stop, sm, s1, energy_column(ep, COL_SPR_W),
                            t.u, t.v, t.w);
    }
    t.energy -= de;
    ts.nuc_left -= m * ep.hard_max;
    return true;
}

/* One transport step of the track in ts (one iteration of the persistent loop): the phases
 *   1 plan_step (step limit, voxel walk; cross_vacuum_voxel for vacuum), 2 lose_energy (energy loss, straggling,
 *   scoring), 3 move_step (multiple Coulomb scattering), 4 nuclear_event (at a sampled hard event),
 *   5 the cut-off, the face crossing and the next voxel.
 * Returns false when the track has ended (stopped, left the grid, absorbed in a nonelastic event); its secondaries
 * are then on the stack. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool track_step(const Params& p, const Scorer& sc, TrackState& ts, Track* stack,
                                                int& n_stack, uint32_t& next_id, HistoryLedger& L)
{
    Track& t = ts.t;
    if (ts.iterations++ >= MCP_MAX_STEPS) {
        /* Too many steps: a numerical problem.  Deposit locally and count it (reported by Python). */
        VoxelIndex last;
        if (locate(p, t.x, t.y, t.z, last)) score_local(sc, linear_index(p, last), t.energy, 1.0f);
        else L.escaped += ledger_units(t.energy);
        ++L.errors;
        return false;
    }
    const int64_t vox = linear_index(p, ts.vi);
    const int mat = p.grid.material_index[vox];
    const float rho = p.grid.density[vox];
    if (rho < MCP_VACUUM_DENSITY) return cross_vacuum_voxel(p, ts, L);
    ++L.steps;
    const EnergyPoint ep = lookup_energy(p, mat, t.energy);
    const StepPlan sp = plan_step(p, ts, vox, mat, rho, ep);
    float e_mid;
    if (!lose_energy(p, sc, ts, sp, vox, mat, rho, ep, e_mid)) return false;
    const float dir_on_axis = sp.end_axis == 0 ? t.u : (sp.end_axis == 1 ? t.v : t.w);
    move_step(p, mat, t, sp.s, sp.m, e_mid, ts.p1v1, ts.rng);
    if (sp.limit == LIMIT_NUCLEAR) {
        if (!nuclear_event(p, sc, t, sp.vox_end, mat, ep.hard_max, ts.rng, stack, n_stack, next_id, L)) return false;
        ts.nuc_left = rng_exponential(ts.rng);
    }
    if (t.energy <= p.options.e_cut) {
        if (t.energy > 0.0f) deposit_local_proton(p, sc, sp.vox_end, mat, t.energy);
        return false;
    }
    bool inside;
    if (sp.limit == LIMIT_BOUNDARY) {
        /* the face crossed is decided by the pre-step direction (the one the walk used) */
        cross_face(p, sp.v_end, sp.end_axis, dir_on_axis, t.x, t.y, t.z);
        inside = locate_across(p, sp.v_end, sp.end_axis, dir_on_axis, t.x, t.y, t.z, ts.vi);
    } else {
        inside = locate(p, t.x, t.y, t.z, ts.vi);
    }
    if (!inside) {
        L.escaped += ledger_units(t.energy);
        return false;
    }
    return true;
}

/* Random stream of a history's passage through its spot's range shifter (distinct from the source stream
 * and from every track id, so that a shifter leaves the transport streams as they were). */
#define MCP_STREAM_SHIFTER 0xFFFFFFFEu
/* A secondary proton made in a range shifter crosses the rest of the slab with the stream of its track id with
 * this bit set (grid track ids count up from 1 and never reach it), and takes its track id's own stream in the
 * grid: the two passages are independent. */
#define MCP_STREAM_SHIFTER_SECONDARY 0x80000000u
/* Deepest direction cosine to the central ray a proton may have in a shifter (below: turned back, ended). */
#define MCP_SHIFTER_MIN_COS 1e-3f

/* How a proton's steps through a range shifter end (shifter_walk). */
enum ShifterEnd { SHIFTER_EXIT = 0, SHIFTER_ENDED = 1 };

/* Take condensed-history steps through the slab of spot sp (see traverse_shifter) from depth `depth` (cm along
 * the central ray from the upstream face) until the proton leaves the downstream face (SHIFTER_EXIT)
 * or ends in the slab (SHIFTER_ENDED: stopped, turned back, below the cut-off, or a nonelastic event).  The
 * energy it loses in the slab is counted in LEDGER_SHIFTER; the energy left when it ends is counted here too,
 * except the secondary protons that go on `stack` (below).  Hard nuclear events: nuclear elastic scattering
 * deflects it (the recoil stays in the slab); p-p elastic scattering keeps the faster proton and a nonelastic
 * event ends it.  With a stack (a primary), the slower p-p proton and the nonelastic event's protons go on it, as
 * nuclear_event puts them on the grid's stack (emit_proton, sample_nonelastic), at their point of emission in the
 * slab, and the event's neutral energy goes to LEDGER_NEUTRAL; without one (a secondary: one generation of
 * secondaries in the slab) their energy stays in the slab. */
MCP_FORCEINLINE MCP_HOST_DEVICE int shifter_walk(const Params& p, const Spot& sp, Track& t, float depth, float p1v1,
                                                 float& nuc_left, Rng& rng, Track* stack, int* n_stack,
                                                 uint32_t* next_id, HistoryLedger& L)
{
    const int mat = sp.rs_material;
    const float rho = sp.rs_density;
    const float* d = sp.dir;
    const float range_cut = material_prop(p, mat, MAT_RANGE_CUT);
    for (int step = 0; step < MCP_MAX_STEPS; ++step) {
        const float cz = t.u * d[0] + t.v * d[1] + t.w * d[2];
        if (cz < MCP_SHIFTER_MIN_COS) break;  /* turned back or sideways: ends here */
        const EnergyPoint ep = lookup_energy(p, mat, t.energy);
        const float m_phys = p.options.max_eloss_fraction * t.energy / ep.stop;
        const float m_nuc = ep.hard_max > 0.0f ? nuc_left / ep.hard_max : MCP_INFINITY;  /* never 0/0: plan_step */
        int limit = m_nuc < m_phys ? LIMIT_NUCLEAR : LIMIT_PHYSICS;
        float s = mcp_min(m_phys, m_nuc) / rho;
        if (p.options.max_step < s) { s = p.options.max_step; limit = LIMIT_PHYSICS; }
        const float s_face = (sp.rs_thickness_cm - depth) / cz;
        if (s_face <= s) { s = mcp_max(s_face, 0.0f); limit = LIMIT_BOUNDARY; }
        const float m = rho * s;
        if (ep.range - m <= range_cut) break;  /* stops in the shifter */
        float e_mid, s1;
        const float de = sample_step_loss(p, mat, ep, t.energy, m, e_mid, s1, rng);
        L.shifter += ledger_units(de);
        t.energy -= de;
        nuc_left -= m * ep.hard_max;
        move_step(p, mat, t, s, m, e_mid, p1v1, rng);
        depth += s * cz;
        if (limit == LIMIT_NUCLEAR) {
            const EnergyPoint en = lookup_energy(p, mat, t.energy);
            const float pick = rng_uniform(rng) * ep.hard_max;   /* null-collision test, as nuclear_event */
            if (pick < energy_column(en, COL_HARD_SIGMA)) {
                const float sig_pp = energy_column(en, COL_PP_SIGMA);
                float e1[3], e2[3], sphi, cphi;
                transverse_basis(t.u, t.v, t.w, e1, e2);
                if (pick >= sig_pp + energy_column(en, COL_EL_SIGMA)) {  /* nonelastic: the proton ends */
                    if (stack == nullptr) break;
                    mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
                    const NuclearProducts np = sample_nonelastic(t.energy, energy_column(en, COL_MULT_P),
                                                                 energy_column(en, COL_FRAC_RECOIL),
                                                                 energy_column(en, COL_MULT_ALPHA),
                                                                 energy_column(en, COL_MULT_D), rng);
                    float local = 0.0f, carried = 0.0f;
                    for (int k = 0; k < np.n_p; ++k) {
                        const int n0 = *n_stack;
                        emit_proton(p, t, e1, e2, np.energy_p[k], np.cos_p[k], cphi, sphi, stack, *n_stack, *next_id,
                                    L, local);
                        if (*n_stack > n0) carried += np.energy_p[k];
                        mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
                    }
                    L.neutral += ledger_units(np.neutral);
                    L.shifter += ledger_units(mcp_max(t.energy - np.neutral - carried, 0.0f));
                    t.energy = 0.0f;
                    break;
                }
                mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
                if (pick >= sig_pp) {  /* nuclear elastic */
                    const ElasticOutcome el = sample_nuclear_elastic(t.energy, material_prop(p, mat, MAT_EL_A), rng);
                    deflect(t, e1, e2, el.cos_theta, cphi, sphi);
                    t.energy -= el.t_recoil;
                    L.shifter += ledger_units(el.t_recoil);
                } else {               /* p-p elastic: the faster proton goes on */
                    /* T1 uniform in [0, T] (nuclear_event); the faster of T1 and T - T1 is uniform in [T/2, T] */
                    const float x = 2.0f * rng_uniform(rng) - 1.0f;
                    const float t1 = 0.5f * t.energy * (1.0f + mcp_max(x, -x));
                    const float t2 = t.energy - t1;
                    float local = t2;
                    if (stack != nullptr) {
                        local = 0.0f;
                        emit_proton(p, t, e1, e2, t2, pp_elastic_cos_lab(t2, t.energy), -cphi, -sphi, stack,
                                    *n_stack, *next_id, L, local);
                    }
                    deflect(t, e1, e2, pp_elastic_cos_lab(t1, t.energy), cphi, sphi);
                    L.shifter += ledger_units(local);
                    t.energy = t1;
                }
            }
            nuc_left = rng_exponential(rng);
        }
        if (t.energy <= p.options.e_cut) break;
        if (limit == LIMIT_BOUNDARY) return SHIFTER_EXIT;
    }
    L.shifter += ledger_units(mcp_max(t.energy, 0.0f));
    return SHIFTER_ENDED;
}

/* Fly a proton at (x, y, z) in direction (u, v, w) straight (vacuum) to the grid's surface: false when it misses
 * the grid or is below the cut-off (its energy counted as missed), else the track at the surface in t. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool fly_to_grid(const Params& p, float x, float y, float z, float u, float v,
                                                float w, float energy, Track& t, HistoryLedger& L)
{
    const float d = distance_to_grid(p, x, y, z, u, v, w);
    if (d < 0.0f || energy <= p.options.e_cut) {
        L.missed += ledger_units(energy);
        return false;
    }
    const float a = d + MCP_BOUNDARY_PUSH;
    t.x = inside_far_face(x + a * u, p.grid.nx, p.grid.vx, p.grid.inv_vx, u);
    t.y = inside_far_face(y + a * v, p.grid.ny, p.grid.vy, p.grid.inv_vy, v);
    t.z = inside_far_face(z + a * w, p.grid.nz, p.grid.vz, p.grid.inv_vz, w);
    t.u = u; t.v = v; t.w = w;
    t.energy = energy;
    return true;
}

/* Carry a primary through the range shifter of its spot (Spot::rs_*): a homogeneous slab of material
 * sp.rs_material and density sp.rs_density between the planes perpendicular to the spot's central ray at
 * rs_face_cm and rs_face_cm + rs_thickness_cm from the source-plane point pos_cm.  The proton flies in a
 * straight line (vacuum, as the source-to-grid flight) to the upstream face, then takes condensed-history steps
 * with the voxel transport's physics (shifter_walk: sample_step_loss: range-table energy loss and straggling;
 * move_step: multiple scattering with lateral displacement; majorant sampling of the hard nuclear events) up to
 * the downstream face; from there it flies on to the grid as before, so the air gap turns the angular spread added
 * in the slab into spot width.  The secondary protons of its hard nuclear events in the slab (the slower p-p
 * proton, a nonelastic event's protons: sampled as in the grid) cross the rest of the slab with the same steps,
 * each with its own random stream (MCP_STREAM_SHIFTER_SECONDARY), fly to the grid and go on the history's stack
 * (stack, n_stack, next_id: LaneHistory's), so that next_track transports them in the grid even when the primary
 * ended in the slab.  One generation: a secondary's own nonelastic event in the slab ends it, its own p-p partner
 * stays there (both in LEDGER_SHIFTER; docs/physics.md).  A history without such events keeps its random
 * numbers and its dose.
 * Returns true when the primary leaves the downstream face (pr updated: position, direction, energy); false when
 * it ends in the shifter (what it did not hand to secondaries counted in LEDGER_SHIFTER). */
MCP_HOST_DEVICE bool traverse_shifter(const Params& p, const Spot& sp, Primary& pr, uint64_t history,
                                      Track* stack, int& n_stack, uint32_t& next_id, HistoryLedger& L)
{
    const float* d = sp.dir;
    Track t;
    t.u = pr.u; t.v = pr.v; t.w = pr.w;
    t.energy = pr.energy;
    t.id = 0;
    {
        const float cz = t.u * d[0] + t.v * d[1] + t.w * d[2];
        const float* o = sp.pos_cm;
        const float z0 = (pr.x - o[0]) * d[0] + (pr.y - o[1]) * d[1] + (pr.z - o[2]) * d[2];
        const float a = cz > MCP_SHIFTER_MIN_COS ? (sp.rs_face_cm - z0) / cz : 0.0f;
        t.x = pr.x + a * t.u; t.y = pr.y + a * t.v; t.z = pr.z + a * t.w;
    }
    Rng rng;
    rng_init(rng, p.options.seed, history, MCP_STREAM_SHIFTER);
    float nuc_left = (p.options.flags & MCP_FLAG_NUCLEAR) ? rng_exponential(rng) : MCP_INFINITY;
    const int n0 = n_stack;
    const bool out = shifter_walk(p, sp, t, 0.0f, proton_pv(t.energy), nuc_left, rng, stack, &n_stack, &next_id, L)
                     == SHIFTER_EXIT;
    if (out) {
        pr.x = t.x; pr.y = t.y; pr.z = t.z;
        pr.u = t.u; pr.v = t.v; pr.w = t.w;
        pr.energy = t.energy;
    } else {
        ++L.shifter_removed;
    }
    /* the secondaries made in the slab: through its rest, then to the grid (kept on the stack) or gone */
    int kept = n0;
    for (int k = n0; k < n_stack; ++k) {
        Track s = stack[k];
        Rng rs;
        rng_init(rs, p.options.seed, history, s.id | MCP_STREAM_SHIFTER_SECONDARY);
        float nl = (p.options.flags & MCP_FLAG_NUCLEAR) ? rng_exponential(rs) : MCP_INFINITY;
        const float* o = sp.pos_cm;
        const float z = (s.x - o[0]) * d[0] + (s.y - o[1]) * d[1] + (s.z - o[2]) * d[2] - sp.rs_face_cm;
        const float depth = mcp_min(mcp_max(z, 0.0f), sp.rs_thickness_cm);
        if (shifter_walk(p, sp, s, depth, proton_pv(s.energy), nl, rs, nullptr, nullptr, nullptr, L) != SHIFTER_EXIT)
            continue;
        Track g;
        if (!fly_to_grid(p, s.x, s.y, s.z, s.u, s.v, s.w, s.energy, g, L)) continue;
        g.id = s.id;
        stack[kept++] = g;
    }
    n_stack = kept;
    return out;
}

/* Every non-zero entry of the thread's ledger into the launch's (zero entries cost no atomic). */
MCP_FORCEINLINE MCP_HOST_DEVICE void flush_ledger(const Params& p, const HistoryLedger& L)
{
#define MCP_X_FLUSH(NAME, name, index, kind, doc) \
    if (L.name) mcp_atomic_add(p.tallies.ledger + LEDGER_##NAME, L.name);
    MCP_LEDGER_ENTRIES(MCP_X_FLUSH)
#undef MCP_X_FLUSH
}

/* SIMT-efficiency proxy only (Params::history_steps, null in a run; mcproton/_kernels/simt.py): at a track's
 * start (end = false) keep the history's step count so far, at its end add the track's steps to its slot.
 * Compiled for the CPU only: the GPU kernel stays as it is (the hooks cost it 8-10 registers, nvcc 13.0 sm_90),
 * and its step counts follow the same distributions (same physics, same random-number streams). */
#if MCP_DEVICE_COMPILE
#define MCP_COUNT_TRACK_STEPS(item, end)
#else
MCP_HOST_DEVICE void count_track_steps(int64_t* history_steps, int64_t i, int64_t steps, bool end)
{
    int64_t* h = history_steps + (int64_t)MCP_HISTORY_STEP_SLOTS * i;
    if (!end) { h[0] = steps; return; }
    const int64_t k = h[1] < MCP_HISTORY_STEP_SLOTS - 3 ? h[1] : MCP_HISTORY_STEP_SLOTS - 3;
    h[2 + k] += steps - h[0];
    h[1] += 1;
}
#define MCP_COUNT_TRACK_STEPS(item, end) \
    if (p.tallies.history_steps) count_track_steps(p.tallies.history_steps, item, L.steps, end)
#endif

/* Lanes of a GPU warp that must want a new history before they fetch one together (1: each at once).  A measuring
 * knob: MCPROTON_CUDA_REFILL_MIN_IDLE (mcproton/_backend/cuda.py) sets it at compile time; the SIMT proxy models it
 * (mcproton/_kernels/simt.py, refill_min_idle).  On the CPU a thread is its own warp (mcp_warp_vote), so a value
 * above 1 changes the loop's form there but never makes a thread wait (tests/engine/test_work_distribution.py). */
#ifndef MCP_REFILL_MIN_IDLE
#define MCP_REFILL_MIN_IDLE 1
#endif

/* The lane's history in flight: its index in the launch, its secondary stack and the next secondary's id. */
struct LaneHistory {
    int64_t i;
    uint64_t history;
    Track stack[MCP_MAX_STACK];
    int n_stack;
    uint32_t next_id;
};

/* A new history's primary, from the source to the grid: source sampling (its own random stream), the range
 * shifter of its spot (whose secondary protons go on the history's stack h.stack), the flight to the grid.
 * Returns false when it never reaches the grid (missed, or ended in the shifter: next_track then takes the
 * history's secondaries, if any); else the primary track at the grid's surface in t. */
MCP_RARE MCP_HOST_DEVICE bool start_history(const Params& p, LaneHistory& h, Track& t, HistoryLedger& L)
{
    Rng src;
    rng_init(src, p.options.seed, h.history, MCP_STREAM_SOURCE);
    Primary pr = sample_primary(p, src);
    L.incident += ledger_units(pr.energy);
    ++L.primaries;
    const Spot& spot = p.source.spots[pr.spot];
    if (spot.rs_thickness_cm > 0.0f && !traverse_shifter(p, spot, pr, h.history, h.stack, h.n_stack, h.next_id, L))
        return false;
    if (!fly_to_grid(p, pr.x, pr.y, pr.z, pr.u, pr.v, pr.w, pr.energy, t, L)) return false;
    t.id = 0;
    return true;
}

/* Refill a lane whose track has ended: the next secondary of its history (last in, first out), else the primary of
 * the next history that the work cursor hands out.  Returns false when the launch has no work left. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool next_track(const Params& p, WorkCursor& wc, uint64_t first_history,
                                                int64_t n_histories, LaneHistory& h, TrackState& ts, HistoryLedger& L)
{
    for (;;) {
        if (h.n_stack > 0) {
            const Track s = h.stack[--h.n_stack];
            MCP_COUNT_TRACK_STEPS(h.i, false);
            if (track_begin(p, s, h.history, ts, L)) return true;
            MCP_COUNT_TRACK_STEPS(h.i, true);
            continue;
        }
        h.i = mcp_next_item(wc);
        if (h.i >= n_histories) return false;
        h.history = first_history + (uint64_t)h.i;
        h.n_stack = 0;
        h.next_id = 1;
        Track t;
        if (!start_history(p, h, t, L)) continue;
        MCP_COUNT_TRACK_STEPS(h.i, false);
        if (track_begin(p, t, h.history, ts, L)) return true;
        MCP_COUNT_TRACK_STEPS(h.i, true);
    }
}

/* Transport histories first_history .. first_history + n_histories - 1 into the tallies of `params`.
 * A persistent, step-granular loop: each thread (a GPU lane) runs one transport step of its current track per
 * iteration, and when the track ends takes the next one at once (next_track: its history's next secondary, else
 * the next history from the work cursor), so that on the GPU the lanes of a warp do not wait for the warp's
 * longest history or for one lane's secondaries.  Each track's random numbers are its own stream (seed, history,
 * track id) and the tallies are integers, so the result does not depend on which thread runs what. */
MCP_KERNEL void mcp_transport(const Params* MCP_RESTRICT params, uint64_t first_history, int64_t n_histories)
{
    const Params& p = *params;
    MCP_WORK_COUNTER(counter, p.tallies.work_next)
    MCP_PARALLEL_BEGIN
    HistoryLedger L = {};
    const Scorer sc = make_scorer(p);
    WorkCursor wc = mcp_work_cursor(counter);
    LaneHistory h;
    h.i = 0;
    h.history = 0;
    h.n_stack = 0;
    h.next_id = 1;
    TrackState ts;
    /* One loop, one step per iteration (not a loop over tracks around a loop over steps, where a warp's lanes would
     * wait at the inner loop's exit for the warp's longest track). */
#if MCP_REFILL_MIN_IDLE <= 1
    bool busy = next_track(p, wc, first_history, n_histories, h, ts, L);
    while (busy) {
        if (!track_step(p, sc, ts, h.stack, h.n_stack, h.next_id, L)) {
            MCP_COUNT_TRACK_STEPS(h.i, true);
            busy = next_track(p, wc, first_history, n_histories, h, ts, L);
        }
    }
#else
    /* A new history waits until MCP_REFILL_MIN_IDLE lanes of the warp need one (or every lane does), so that the
     * lanes start their histories together; a secondary of the lane's own history is taken at once. */
    bool busy = true, alive = false;
    while (busy) {
        if (alive && !track_step(p, sc, ts, h.stack, h.n_stack, h.next_id, L)) {
            alive = false;
            MCP_COUNT_TRACK_STEPS(h.i, true);
        }
        const bool wants_history = !alive && h.n_stack == 0;
        const WarpVote v = mcp_warp_vote(wants_history);
        if (wants_history && v.yes < MCP_REFILL_MIN_IDLE && v.yes < v.lanes) continue;
        if (!alive) busy = alive = next_track(p, wc, first_history, n_histories, h, ts, L);
    }
#endif
    flush_ledger(p, L);
    MCP_PARALLEL_END
}
