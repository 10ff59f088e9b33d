/* \file transport.cu
 * The transport kernel: the only file with production entry points (probes.cu holds test-only ones).
 *
 * One thread transports one whole history (the primary and its secondary protons) at a time:
 * condensed-history steps limited by the voxel boundary, the maximum fractional energy loss, the maximum
 * step and the distance to the next hard nuclear event.  Per step: CSDA energy loss from the range
 * tables, Gaussian straggling, scoring, multiple Coulomb scattering (angle and lateral displacement).
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
#include "source/sample.h"

#define MCP_MAX_STACK 16
#define MCP_MAX_STEPS 200000
/* Density below which a voxel is treated as vacuum (g/cm3). */
#define MCP_VACUUM_DENSITY 1e-6f

struct Track {
    float x, y, z, u, v, w;
    float energy;
    uint32_t id;
};

struct HistoryLedger {
    int64_t incident, escaped, missed, neutral;
    int64_t primaries, nuclear, pp_elastic, nuc_elastic, secondaries, steps, errors, stack_full;
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

MCP_FORCEINLINE MCP_HOST_DEVICE void deposit_local_proton(const Params& p, const Scorer& sc, int64_t vox, int mat, float energy)
{
    const EnergyPoint ep = lookup_energy(p, mat, mcp_max(energy, 1e-3f));
    const float rho = p.density[vox];
    score_proton_step(sc, vox, energy, energy_column(ep, COL_SPR_W), ep.stop * rho * 0.1f);
}

/* Put a secondary proton of energy e on the stack, emitted at polar cosine ct (relative to the track) and
 * azimuth given by (cphi, sphi) in the track's transverse basis; slow ones and overflow are local. */
MCP_FORCEINLINE MCP_HOST_DEVICE void emit_proton(const Params& p, const Track& t, const float* e1, const float* e2,
                                                 float e, float ct, float cphi, float sphi, Track* stack,
                                                 int& n_stack, uint32_t& next_id, HistoryLedger& L, float& local)
{
    if (e <= p.e_cut) { local += e; return; }
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
 * Returns true when the track goes on (nuclear elastic: the proton is deflected and slowed by the recoil
 * energy, which is deposited here); otherwise the incoming track ends and its products go on the stack.
 * p-p elastic: isotropic in the centre-of-mass system (nearly so at 30-300 MeV, SAID), non-relativistic
 * kinematics of equal masses: T1 = T (1 + cos theta_cm) / 2, T2 = T - T1, cos theta_i = sqrt(T_i / T), the two
 * protons at opposite azimuths. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool nuclear_event(const Params& p, const Scorer& sc, Track& t, int64_t vox, int mat,
                                                   Rng& rng, Track* stack, int& n_stack, uint32_t& next_id,
                                                   HistoryLedger& L)
{
    const EnergyPoint ep = lookup_energy(p, mat, t.energy);
    const float sig_pp = energy_column(ep, COL_PP_SIGMA);
    const float sig_el = energy_column(ep, COL_EL_SIGMA);
    float e1[3], e2[3];
    transverse_basis(t.u, t.v, t.w, e1, e2);
    float local = 0.0f;
    float sphi, cphi;
    mcp_sincospi(2.0f * rng_uniform(rng), &sphi, &cphi);
    const float pick = rng_uniform(rng) * ep.nuc_sigma;
    if (pick >= sig_pp && pick < sig_pp + sig_el) {
        const ElasticOutcome el = sample_nuclear_elastic(t.energy, material_prop(p, mat, MAT_EL_A), rng);
        const float ct = el.cos_theta;
        const float st = mcp_sqrt(mcp_max(1.0f - ct * ct, 0.0f));
        float u = ct * t.u + st * (cphi * e1[0] + sphi * e2[0]);
        float v = ct * t.v + st * (cphi * e1[1] + sphi * e2[1]);
        float w = ct * t.w + st * (cphi * e1[2] + sphi * e2[2]);
        const float inv = mcp_rsqrt(u * u + v * v + w * w);
        t.u = u * inv; t.v = v * inv; t.w = w * inv;
        t.energy -= el.t_recoil;
        score_local(sc, vox, el.t_recoil, energy_column(ep, COL_SPR_W));
        ++L.nuc_elastic;
        return true;
    }
    if (pick < sig_pp) {
        const float t1 = 0.5f * t.energy * (1.0f + (2.0f * rng_uniform(rng) - 1.0f));
        const float t2 = t.energy - t1;
        emit_proton(p, t, e1, e2, t1, mcp_sqrt(t1 / t.energy), cphi, sphi, stack, n_stack, next_id, L, local);
        emit_proton(p, t, e1, e2, t2, mcp_sqrt(t2 / t.energy), -cphi, -sphi, stack, n_stack, next_id, L, local);
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
    score_local(sc, vox, local, energy_column(ep, COL_SPR_W));
    L.neutral += ledger_units(np.neutral);
    ++L.nuclear;
    return false;
}

/* Transport one proton until it stops, leaves the grid or is absorbed in a nonelastic event. */
MCP_HOST_DEVICE void transport_track(const Params& p, const Scorer& sc, Track t, uint64_t history, Track* stack, int& n_stack,
                                     uint32_t& next_id, HistoryLedger& L)
{
    VoxelIndex vi;
    if (!locate(p, t.x, t.y, t.z, vi)) {
        L.escaped += ledger_units(t.energy);
        return;
    }
    Rng rng;
    rng_init(rng, p.seed, history, t.id);
    const float p1v1 = proton_pv(t.energy);
    float nuc_left = (p.flags & MCP_FLAG_NUCLEAR) ? rng_exponential(rng) : MCP_INFINITY;

    for (int step = 0; step < MCP_MAX_STEPS; ++step) {
        const int64_t vox = linear_index(p, vi);
        const int mat = p.material_index[vox];
        const float rho = p.density[vox];
        const VoxelExit ex = voxel_exit(p, vi, t.x, t.y, t.z, t.u, t.v, t.w);
        const float d_vox = ex.distance;

        if (rho < MCP_VACUUM_DENSITY) {
            t.x += d_vox * t.u; t.y += d_vox * t.v; t.z += d_vox * t.w;
            cross_face(p, vi, ex.axis, ex.axis == 0 ? t.u : (ex.axis == 1 ? t.v : t.w), t.x, t.y, t.z);
            if (!locate(p, t.x, t.y, t.z, vi)) { L.escaped += ledger_units(t.energy); return; }
            continue;
        }
        ++L.steps;
        const EnergyPoint ep = lookup_energy(p, mat, t.energy);

        /* Step length: voxel boundary, energy-loss fraction, maximum step, next nonelastic event. */
        float s = d_vox;
        int limit = LIMIT_BOUNDARY;
        const float s_phys = mcp_min(p.max_eloss_fraction * t.energy / (ep.stop * rho), p.max_step);
        if (s_phys < s) { s = s_phys; limit = LIMIT_PHYSICS; }
        const float mfp_rate = ep.nuc_sigma * rho;  /* events per cm */
        if (nuc_left < s * mfp_rate) { s = nuc_left / mfp_rate; limit = LIMIT_NUCLEAR; }

        /* CSDA energy loss through the range table. */
        const float r_after = ep.range - rho * s;
        if (r_after <= material_prop(p, mat, MAT_RANGE_CUT)) {
            /* The proton stops within this step (before the end): residual energy deposited here. */
            score_proton_step(sc, vox, t.energy, energy_column(ep, COL_SPR_W), ep.stop * rho * 0.1f);
            return;
        }
        const float de_mean = t.energy - energy_from_range(p, mat, r_after);
        const float e_mid = t.energy - 0.5f * de_mean;
        float de = de_mean;
        if (p.flags & MCP_FLAG_STRAGGLING) {
            const float var = bohr_variance_mev2(e_mid, material_prop(p, mat, MAT_Z_OVER_A), rho * s);
            de = sample_energy_loss(de_mean, var, t.energy, rng_gauss(rng));
        }
        /* LET: electronic stopping power at the mid-step energy, MeV/cm -> keV/um (x 0.1).  Not de_mean / s:
         * for the very short steps at voxel faces the float difference E - E(R - rho s) is rounding noise of
         * either sign, and dividing it by s gave absurd (even negative) LETs that overflowed the tally. */
        score_proton_step(sc, vox, de, energy_column(ep, COL_SPR_W), 0.1f * rho * stopping_at(p, mat, e_mid));
        t.energy -= de;
        nuc_left -= s * mfp_rate;

        const float dir_on_axis = ex.axis == 0 ? t.u : (ex.axis == 1 ? t.v : t.w);
        /* Multiple Coulomb scattering: deflection and correlated lateral displacement (msc.h). */
        if (p.flags & MCP_FLAG_MSC) {
            const float T = scattering_power_dm(proton_pv(e_mid), p1v1, material_prop(p, mat, MAT_XS)) * rho;
            const float sig = mcp_sqrt(T * s);
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

        if (limit == LIMIT_NUCLEAR) {
            if (!nuclear_event(p, sc, t, vox, mat, rng, stack, n_stack, next_id, L)) return;
            nuc_left = rng_exponential(rng);
        }
        if (t.energy <= p.e_cut) {
            if (t.energy > 0.0f) deposit_local_proton(p, sc, vox, mat, t.energy);
            return;
        }
        if (limit == LIMIT_BOUNDARY) {
            /* the face crossed is decided by the pre-step direction (the one the distance used) */
            cross_face(p, vi, ex.axis, dir_on_axis, t.x, t.y, t.z);
        }
        if (!locate(p, t.x, t.y, t.z, vi)) {
            L.escaped += ledger_units(t.energy);
            return;
        }
    }
    /* Too many steps: a numerical problem.  Deposit locally and count it (reported by Python). */
    VoxelIndex last;
    if (locate(p, t.x, t.y, t.z, last)) score_local(sc, linear_index(p, last), t.energy, 1.0f);
    else L.escaped += ledger_units(t.energy);
    ++L.errors;
}

MCP_FORCEINLINE MCP_HOST_DEVICE void flush_ledger(const Params& p, const HistoryLedger& L)
{
    mcp_atomic_add(p.ledger + LEDGER_INCIDENT, L.incident);
    mcp_atomic_add(p.ledger + LEDGER_ESCAPED, L.escaped);
    mcp_atomic_add(p.ledger + LEDGER_MISSED, L.missed);
    mcp_atomic_add(p.ledger + LEDGER_NEUTRAL, L.neutral);
    mcp_atomic_add(p.ledger + LEDGER_PRIMARIES, L.primaries);
    mcp_atomic_add(p.ledger + LEDGER_NUCLEAR_EVENTS, L.nuclear);
    mcp_atomic_add(p.ledger + LEDGER_PP_ELASTIC, L.pp_elastic);
    mcp_atomic_add(p.ledger + LEDGER_NUC_ELASTIC, L.nuc_elastic);
    mcp_atomic_add(p.ledger + LEDGER_SECONDARIES, L.secondaries);
    mcp_atomic_add(p.ledger + LEDGER_STEPS, L.steps);
    if (L.errors) mcp_atomic_add(p.ledger + LEDGER_ERRORS, L.errors);
    if (L.stack_full) mcp_atomic_add(p.ledger + LEDGER_STACK_FULL, L.stack_full);
}

/* Transport histories first_history .. first_history + n_histories - 1 into the tallies of `params`. */
MCP_KERNEL void mcp_transport(const Params* MCP_RESTRICT params, uint64_t first_history, int64_t n_histories)
{
    const Params& p = *params;
    MCP_PARALLEL_BEGIN
    HistoryLedger L = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const Scorer sc = make_scorer(p);
    MCP_FOR_EACH_ITEM(i, n_histories)
    {
        const uint64_t history = first_history + (uint64_t)i;
        Rng src;
        rng_init(src, p.seed, history, MCP_STREAM_SOURCE);
        const Primary pr = sample_primary(p, src);
        L.incident += ledger_units(pr.energy);
        ++L.primaries;
        const float d = distance_to_grid(p, pr.x, pr.y, pr.z, pr.u, pr.v, pr.w);
        if (d < 0.0f || pr.energy <= p.e_cut) {
            L.missed += ledger_units(pr.energy);
            continue;
        }
        Track t;
        const float a = d + MCP_BOUNDARY_PUSH;
        t.x = pr.x + a * pr.u; t.y = pr.y + a * pr.v; t.z = pr.z + a * pr.w;
        t.u = pr.u; t.v = pr.v; t.w = pr.w;
        t.energy = pr.energy;
        t.id = 0;
        Track stack[MCP_MAX_STACK];
        int n_stack = 0;
        uint32_t next_id = 1;
        transport_track(p, sc, t, history, stack, n_stack, next_id, L);
        while (n_stack > 0) {
            const Track s = stack[--n_stack];
            transport_track(p, sc, s, history, stack, n_stack, next_id, L);
        }
    }
    flush_ledger(p, L);
    MCP_PARALLEL_END
}
