/* \file probes.cu
 * Test-only entry points: they call the single-source header functions one by one so that the tests can
 * compare them with independent NumPy references, on the CPU and the GPU alike.  Never used in a run.
 */
#include "core/portability.h"
#include "random/rng.h"
#include "params.h"
#include "physics/material_tables.h"
#include "physics/straggling.h"
#include "physics/msc.h"
#include "physics/nuclear.h"
#include "source/sample.h"
#include "geometry/voxel_grid.h"
#include "scoring/fragments.h"

#define MCP_OFFSET(type, field) ((int64_t)(&((type*)0)->field))

/* Raw Philox4x32-10: in = n x {ctr0..ctr3, key0, key1}, out = n x 4 words. */
MCP_KERNEL void mcp_probe_philox(const uint32_t* MCP_RESTRICT in, uint32_t* MCP_RESTRICT out, int64_t n)
{
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        Philox4x32Ctr c;
        for (int k = 0; k < 4; ++k) c.v[k] = in[6 * i + k];
        c = mcp_philox4x32_10(c, in[6 * i + 4], in[6 * i + 5]);
        for (int k = 0; k < 4; ++k) out[4 * i + k] = c.v[k];
    }
    MCP_PARALLEL_END
}

/* Streams of uniforms (kind 0) or normals (kind 1): n_tracks streams of length m of history `history`. */
MCP_KERNEL void mcp_probe_stream(uint64_t seed, uint64_t history, int32_t kind, float* MCP_RESTRICT out,
                                 int64_t n_tracks, int64_t m)
{
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(t, n_tracks)
    {
        Rng r;
        rng_init(r, seed, history, (uint32_t)t);
        for (int64_t j = 0; j < m; ++j) out[t * m + j] = kind == 0 ? rng_uniform(r) : rng_gauss(r);
    }
    MCP_PARALLEL_END
}

/* CSDA energy after a path of mass thickness dx_g_cm2[i] in material mat[i] from energy e[i]. */
MCP_KERNEL void mcp_probe_energy_loss(const Params* MCP_RESTRICT params, const float* MCP_RESTRICT e,
                                      const int32_t* MCP_RESTRICT mat, const float* MCP_RESTRICT dx,
                                      float* MCP_RESTRICT out, int64_t n)
{
    const Params& p = *params;
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        const EnergyPoint ep = lookup_energy(p, mat[i], e[i]);
        const float r = ep.range - dx[i];
        out[3 * i + 0] = r > 0.0f ? energy_from_range(p, mat[i], r) : 0.0f;
        out[3 * i + 1] = ep.range;
        out[3 * i + 2] = ep.stop;
    }
    MCP_PARALLEL_END
}

/* Physics functions: out[i] = {bohr variance, scattering power, pv} for energy e[i], z/a, thickness, X_S. */
MCP_KERNEL void mcp_probe_physics(const float* MCP_RESTRICT in, float* MCP_RESTRICT out, int64_t n)
{
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        const float T = in[5 * i], za = in[5 * i + 1], dx = in[5 * i + 2], xs = in[5 * i + 3], t1 = in[5 * i + 4];
        out[3 * i + 0] = bohr_variance_mev2(T, za, dx);
        out[3 * i + 1] = scattering_power_dm(proton_pv(T), proton_pv(t1), xs);
        out[3 * i + 2] = proton_pv(T);
    }
    MCP_PARALLEL_END
}

/* Nuclear elastic scattering: in = n x {T (MeV), A}, out = n x {recoil energy (MeV), cos theta}; item i draws
 * from the stream (seed, history i, track 0). */
MCP_KERNEL void mcp_probe_elastic(const float* MCP_RESTRICT in, uint64_t seed, float* MCP_RESTRICT out, int64_t n)
{
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        Rng r;
        rng_init(r, seed, (uint64_t)i, 0u);
        const ElasticOutcome el = sample_nuclear_elastic(in[2 * i], in[2 * i + 1], r);
        out[2 * i] = el.t_recoil;
        out[2 * i + 1] = el.cos_theta;
    }
    MCP_PARALLEL_END
}

/* Elastic p-p kinematics: in = n x {T, t_out} (MeV), out = n x {lab cos theta of the proton leaving with t_out}. */
MCP_KERNEL void mcp_probe_pp(const float* MCP_RESTRICT in, float* MCP_RESTRICT out, int64_t n)
{
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n) { out[i] = pp_elastic_cos_lab(in[2 * i + 1], in[2 * i]); }
    MCP_PARALLEL_END
}

/* The voxel walk (geometry/voxel_grid.h): in = n x {x, y, z (cm, grid frame), u, v, w, length (cm)};
 * out: for each ray up to MCP_PROBE_WALK_MAX voxels crossed in order (linear index, -1 after the last) and the
 * distance from the ray's start to each one's exit face. */
#define MCP_PROBE_WALK_MAX 64
MCP_KERNEL void mcp_probe_walk(const Params* MCP_RESTRICT params, const float* MCP_RESTRICT in,
                               int64_t* MCP_RESTRICT vox_out, float* MCP_RESTRICT t_out, int64_t n)
{
    const Params& p = *params;
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        const float* r = in + 7 * i;
        for (int j = 0; j < MCP_PROBE_WALK_MAX; ++j) { vox_out[MCP_PROBE_WALK_MAX * i + j] = -1; t_out[MCP_PROBE_WALK_MAX * i + j] = 0.0f; }
        VoxelIndex v;
        if (!locate(p, r[0], r[1], r[2], v)) continue;
        VoxelWalk k = walk_begin(p, v, linear_index(p, v), r[0], r[1], r[2], r[3], r[4], r[5]);
        for (int j = 0; j < MCP_PROBE_WALK_MAX; ++j) {
            int ax;
            const float t = walk_exit(k, ax);
            vox_out[MCP_PROBE_WALK_MAX * i + j] = k.vox;
            t_out[MCP_PROBE_WALK_MAX * i + j] = t;
            if (t >= r[6] || !walk_next(p, k, ax, ax == 0 ? r[3] : (ax == 1 ? r[4] : r[5]))) break;
        }
    }
    MCP_PARALLEL_END
}

/* Sampled primaries (x, y, z, u, v, w, E) for histories 0..n-1 (source stream). */
MCP_KERNEL void mcp_probe_source(const Params* MCP_RESTRICT params, float* MCP_RESTRICT out, int64_t n)
{
    const Params& p = *params;
    MCP_PARALLEL_BEGIN
    MCP_FOR_EACH_ITEM(i, n)
    {
        Rng r;
        rng_init(r, p.options.seed, (uint64_t)i, MCP_STREAM_SOURCE);
        const Primary pr = sample_primary(p, r);
        const float v[7] = {pr.x, pr.y, pr.z, pr.u, pr.v, pr.w, pr.energy};
        for (int k = 0; k < 7; ++k) out[7 * i + k] = v[k];
    }
    MCP_PARALLEL_END
}

/* Fragment deposits (scoring/fragments.h): item i lays a fragment of in[6i..6i+5] = (x, y, z in cm from the grid's
 * corner, energy MeV, mass in proton masses, charge squared) into the Params' tallies (threads share them
 * atomically when the flags say so); out[i] = the energy that left the grid.  Its own random stream per item. */
MCP_KERNEL void mcp_probe_fragment(const Params* MCP_RESTRICT params, uint64_t seed, const float* MCP_RESTRICT in,
                                   float* MCP_RESTRICT out, int64_t n)
{
    const Params& p = *params;
    MCP_PARALLEL_BEGIN
    const Scorer sc = make_scorer(p);
    MCP_FOR_EACH_ITEM(i, n)
    {
        const float* r = in + 6 * i;
        Rng rng;
        rng_init(rng, seed, (uint64_t)i, 0u);
        VoxelIndex v;
        out[i] = 0.0f;
        if (!locate(p, r[0], r[1], r[2], v)) continue;
        const int64_t vox = linear_index(p, v);
        out[i] = deposit_fragment(p, sc, r[0], r[1], r[2], vox, p.grid.material_index[vox], r[3], r[4], r[5], 1.0f,
                                  rng);
    }
    MCP_PARALLEL_END
}

/* Struct layout probe: sizeof(Params); for each role (MCP_PARAMS_ROLES) its offset in Params, its sizeof and the
 * offset in Params of each of its fields; then sizeof(Spot) and the offset of each of its fields
 * (MCP_SPOT_FIELDS).  Checked against the NumPy dtypes (mcproton/_kernels/layout.py LAYOUT_PROBE_FIELDS,
 * expected_layout). */
MCP_KERNEL void mcp_probe_layout(int64_t* MCP_RESTRICT out)
{
    int k = 0;
    out[k++] = (int64_t)sizeof(Params);
#define MCP_X_FIELD_OFFSET(type, name, doc) out[k++] = base + MCP_OFFSET(Role, name);
#define MCP_X_ROLE_OFFSETS(Type, member, FIELDS, doc) \
    { \
        typedef Type Role; \
        const int64_t base = MCP_OFFSET(Params, member); \
        out[k++] = base; \
        out[k++] = (int64_t)sizeof(Role); \
        FIELDS(MCP_X_FIELD_OFFSET) \
    }
    MCP_PARAMS_ROLES(MCP_X_ROLE_OFFSETS)
#undef MCP_X_ROLE_OFFSETS
#undef MCP_X_FIELD_OFFSET
    out[k++] = (int64_t)sizeof(Spot);
#define MCP_X_FIELD_OFFSET(type, name, count, doc) out[k++] = MCP_OFFSET(Spot, name);
    MCP_SPOT_FIELDS(MCP_X_FIELD_OFFSET)
#undef MCP_X_FIELD_OFFSET
}

/* Contract probe: the values the compiler gives the lists and constants of params.h, in the order of
 * mcproton/_kernels/layout.py contract_probe_expected() (which parses the same lists): the ledger entries, the energy
 * and material columns, the flags (each list preceded by its record size or entry count), then the constants. */
MCP_KERNEL void mcp_probe_contract(int64_t* MCP_RESTRICT out)
{
    int k = 0;
#define MCP_X_COUNT(...) + 1
    out[k++] = N_LEDGER;
    out[k++] = 0 MCP_LEDGER_ENTRIES(MCP_X_COUNT);
#define MCP_X_VALUE(NAME, name, index, kind, doc) out[k++] = LEDGER_##NAME;
    MCP_LEDGER_ENTRIES(MCP_X_VALUE)
#undef MCP_X_VALUE
    out[k++] = N_ENERGY_COLUMNS;
    out[k++] = 0 MCP_ENERGY_COLUMNS(MCP_X_COUNT);
#define MCP_X_VALUE(NAME, index, doc) out[k++] = COL_##NAME;
    MCP_ENERGY_COLUMNS(MCP_X_VALUE)
#undef MCP_X_VALUE
    out[k++] = N_MATERIAL_COLUMNS;
    out[k++] = 0 MCP_MATERIAL_COLUMNS(MCP_X_COUNT);
#define MCP_X_VALUE(NAME, index, doc) out[k++] = MAT_##NAME;
    MCP_MATERIAL_COLUMNS(MCP_X_VALUE)
#undef MCP_X_VALUE
    out[k++] = 0 MCP_FLAGS(MCP_X_COUNT);
#define MCP_X_VALUE(NAME, bit, doc) out[k++] = MCP_FLAG_##NAME;
    MCP_FLAGS(MCP_X_VALUE)
#undef MCP_X_VALUE
#undef MCP_X_COUNT
    out[k++] = (int64_t)MCP_TALLY_SCALE;
    out[k++] = (int64_t)MCP_LET_SCALE;
    out[k++] = MCP_TOUCH_SHIFT;
    out[k++] = MCP_HISTORY_STEP_SLOTS;
    out[k++] = (int64_t)sizeof(Params);
}
