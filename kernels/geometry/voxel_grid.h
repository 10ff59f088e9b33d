/* \file geometry/voxel_grid.h
 * Navigation in a rectilinear voxel grid.  Positions are in cm relative to the outer corner of voxel
 * [0,0,0]; the grid spans [0, n*v) along each axis.
 */
#pragma once
#include "../params.h"

/* Distance pushed across a voxel face after a boundary-limited step (cm): 1e-5 cm = 0.1 um, above the
 * float rounding of positions up to ~60 cm (ulp 4e-6 cm), far below any physical scale.  Beyond, the rounding of
 * the index (c * inv_v) can undo it: locate_across and inside_far_face take the index the push meant. */
#define MCP_BOUNDARY_PUSH 1e-5f

struct VoxelIndex { int ix, iy, iz; };

MCP_FORCEINLINE MCP_HOST_DEVICE bool locate(const Params& p, float x, float y, float z, VoxelIndex& v)
{
    v.ix = (int)floorf(x * p.grid.inv_vx);
    v.iy = (int)floorf(y * p.grid.inv_vy);
    v.iz = (int)floorf(z * p.grid.inv_vz);
    return v.ix >= 0 && v.iy >= 0 && v.iz >= 0 && v.ix < p.grid.nx && v.iy < p.grid.ny && v.iz < p.grid.nz;
}

MCP_FORCEINLINE MCP_HOST_DEVICE int64_t linear_index(const Params& p, const VoxelIndex& v)
{
    return ((int64_t)v.iz * p.grid.ny + v.iy) * p.grid.nx + v.ix;
}

MCP_FORCEINLINE MCP_HOST_DEVICE float axis_exit_distance(float x, int i, float vox, float u)
{
    if (u > 1e-12f) return ((float)(i + 1) * vox - x) / u;
    if (u < -1e-12f) return ((float)i * vox - x) / u;
    return MCP_INFINITY;
}

struct VoxelExit {
    float distance;  /* along the direction, >= 0 */
    int axis;        /* 0, 1, 2 = x, y, z face crossed */
};

/* Distance along (u, v, w) to the boundary of the current voxel, and the axis of the face reached. */
MCP_FORCEINLINE MCP_HOST_DEVICE VoxelExit voxel_exit(const Params& p, const VoxelIndex& v, float x, float y,
                                                     float z, float u, float vv, float w)
{
    VoxelExit e;
    e.distance = axis_exit_distance(x, v.ix, p.grid.vx, u);
    e.axis = 0;
    const float dy = axis_exit_distance(y, v.iy, p.grid.vy, vv);
    if (dy < e.distance) { e.distance = dy; e.axis = 1; }
    const float dz = axis_exit_distance(z, v.iz, p.grid.vz, w);
    if (dz < e.distance) { e.distance = dz; e.axis = 2; }
    e.distance = mcp_max(e.distance, 0.0f);
    return e;
}

/* After a step that ended on a face of voxel v along `axis` (direction component `dir`), put the
 * coordinate just across that face, so that the next voxel is found whatever the direction's obliquity. */
MCP_FORCEINLINE MCP_HOST_DEVICE void cross_face(const Params& p, const VoxelIndex& v, int axis, float dir,
                                                float& x, float& y, float& z)
{
    float* c = axis == 0 ? &x : (axis == 1 ? &y : &z);
    const int i = axis == 0 ? v.ix : (axis == 1 ? v.iy : v.iz);
    const float vox = axis == 0 ? p.grid.vx : (axis == 1 ? p.grid.vy : p.grid.vz);
    if (dir > 0.0f) *c = mcp_max(*c, (float)(i + 1) * vox + MCP_BOUNDARY_PUSH);
    else *c = mcp_min(*c, (float)i * vox - MCP_BOUNDARY_PUSH);
}

/* The voxel a track is in after cross_face pushed it across the face of `from` along `axis` (direction component
 * `dir`): located from the position as locate does, except along `axis`, where it is the neighbour of `from` when the
 * position still reads as `from`.  The push (1e-5 cm) is about one float32 ulp of a coordinate near 1 m and less
 * beyond, and the rounding of c * inv_v can undo it: located from the position alone, a track crossing a face more
 * than ~1.03 m from the grid's corner (0.5-2 mm voxels; ~1.2 m at 3 mm) stayed in the voxel it left, took steps of
 * length 0 until the step limit and put all its energy there (the scale audit of 2026-12-06: 11 % of the tracks of
 * a head placed 1.12 m up a long grid; high-dose mean -5 %).  Wherever the push survives the rounding (every grid up
 * to ~1 m), the index is the located one: the same bits as before.  Returns whether the voxel is inside the grid. */
MCP_FORCEINLINE MCP_HOST_DEVICE bool locate_across(const Params& p, const VoxelIndex& from, int axis, float dir,
                                                   float x, float y, float z, VoxelIndex& v)
{
    locate(p, x, y, z, v);
    int* a = axis == 0 ? &v.ix : (axis == 1 ? &v.iy : &v.iz);
    const int i = axis == 0 ? from.ix : (axis == 1 ? from.iy : from.iz);
    if (*a == i) *a = dir > 0.0f ? i + 1 : i - 1;
    return v.ix >= 0 && v.iy >= 0 && v.iz >= 0 && v.ix < p.grid.nx && v.iy < p.grid.ny && v.iz < p.grid.nz;
}

/* A primary placed on the grid's surface (start_history), on the inside of a far face (coordinate n * v, entering
 * towards -axis) that the float32 rounding put back on the face or beyond it: moved onto the inside, by 2^-21 of the
 * coordinate (1.2 um at 2.5 m).  The push onto the inside survives the rounding up to ~2.5 m at 1-2.5 mm voxels and
 * to ~0.8 m at 3 mm; beyond, every primary of a beam entering through such a face was counted as escaped, with no
 * dose and no error (the scale audit of 2026-12-06).  A coordinate that locates inside is left as it is. */
MCP_FORCEINLINE MCP_HOST_DEVICE float inside_far_face(float c, int n, float vox, float inv_v, float dir)
{
    if (dir < 0.0f && (int)floorf(c * inv_v) >= n && c <= (float)n * vox * (1.0f + 9.5367431640625e-07f))
        return (float)n * vox * (1.0f - 4.76837158203125e-07f);
    return c;
}

/* Distance along the ray to the grid's bounding box (0 if inside), or a negative value if it misses. */
MCP_FORCEINLINE MCP_HOST_DEVICE float distance_to_grid(const Params& p, float x, float y, float z, float u,
                                                       float v, float w)
{
    const float lo[3] = {0.0f, 0.0f, 0.0f};
    const float hi[3] = {p.grid.nx * p.grid.vx, p.grid.ny * p.grid.vy, p.grid.nz * p.grid.vz};
    const float o[3] = {x, y, z};
    const float d[3] = {u, v, w};
    float t0 = 0.0f, t1 = MCP_INFINITY;
    for (int k = 0; k < 3; ++k) {
        if (d[k] > 1e-12f || d[k] < -1e-12f) {
            float ta = (lo[k] - o[k]) / d[k];
            float tb = (hi[k] - o[k]) / d[k];
            if (ta > tb) { const float tmp = ta; ta = tb; tb = tmp; }
            t0 = mcp_max(t0, ta);
            t1 = mcp_min(t1, tb);
        } else if (o[k] < lo[k] || o[k] >= hi[k]) {
            return -1.0f;
        }
    }
    return t0 <= t1 ? t0 : -1.0f;
}

/* VoxelWalk: the voxels a straight ray crosses, in order (a 3D DDA: Amanatides & Woo, "A fast voxel
 * traversal algorithm for ray tracing", Eurographics 1987).  t_exit[k] is the distance from the ray's origin
 * to the face through which it leaves the current voxel along axis k.  The transport uses it twice per step:
 * to find how far the step may run through voxels of one material, then to share the step's energy loss among
 * the voxels it crossed; both passes start from the same copy, so they see the same voxels. */
struct VoxelWalk {
    VoxelIndex v;
    int64_t vox;
    float t_exit[3];
    float t_delta[3];
};

MCP_FORCEINLINE MCP_HOST_DEVICE void walk_axis(float x, int i, float vox, float u, float& t_exit, float& t_delta)
{
    if (u > 1e-12f) { t_exit = ((float)(i + 1) * vox - x) / u; t_delta = vox / u; }
    else if (u < -1e-12f) { t_exit = ((float)i * vox - x) / u; t_delta = -vox / u; }
    else { t_exit = MCP_INFINITY; t_delta = MCP_INFINITY; }
    t_exit = mcp_max(t_exit, 0.0f);
}

MCP_FORCEINLINE MCP_HOST_DEVICE VoxelWalk walk_begin(const Params& p, const VoxelIndex& v, int64_t vox, float x,
                                                     float y, float z, float u, float vv, float w)
{
    VoxelWalk k;
    k.v = v;
    k.vox = vox;
    walk_axis(x, v.ix, p.grid.vx, u, k.t_exit[0], k.t_delta[0]);
    walk_axis(y, v.iy, p.grid.vy, vv, k.t_exit[1], k.t_delta[1]);
    walk_axis(z, v.iz, p.grid.vz, w, k.t_exit[2], k.t_delta[2]);
    return k;
}

/* Distance from the ray's origin to the exit of the current voxel, and the axis of the face crossed. */
MCP_FORCEINLINE MCP_HOST_DEVICE float walk_exit(const VoxelWalk& k, int& axis)
{
    axis = 0;
    float t = k.t_exit[0];
    if (k.t_exit[1] < t) { t = k.t_exit[1]; axis = 1; }
    if (k.t_exit[2] < t) { t = k.t_exit[2]; axis = 2; }
    return t;
}

/* Step into the neighbour across the face along `axis` (the ray's direction sign `dir`); false if that
 * leaves the grid (the walk is then unchanged). */
MCP_FORCEINLINE MCP_HOST_DEVICE bool walk_next(const Params& p, VoxelWalk& k, int axis, float dir)
{
    const int d = dir > 0.0f ? 1 : -1;
    if (axis == 0) {
        const int i = k.v.ix + d;
        if (i < 0 || i >= p.grid.nx) return false;
        k.v.ix = i; k.vox += d;
    } else if (axis == 1) {
        const int i = k.v.iy + d;
        if (i < 0 || i >= p.grid.ny) return false;
        k.v.iy = i; k.vox += d * (int64_t)p.grid.nx;
    } else {
        const int i = k.v.iz + d;
        if (i < 0 || i >= p.grid.nz) return false;
        k.v.iz = i; k.vox += d * (int64_t)p.grid.nx * p.grid.ny;
    }
    k.t_exit[axis] += k.t_delta[axis];
    return true;
}
