/* \file source/spot.h
 * A Gaussian pencil beam at its source plane: struct Spot, written ONCE as the X-macro list MCP_SPOT_FIELDS,
 * X(C type, name, count, "description"): count 1 a scalar, 2 or 3 an array name[count] (MCP_SPOT_DIM_*).
 * C type: float or int32_t.  The Python side (mcproton/_kernels/layout.py SPOT_DTYPE, re-exported as
 * mcproton.source.SPOT_DTYPE) parses this list with the same names; the layout probe (probes.cu
 * mcp_probe_layout) checks every offset, and the static_assert below that Spot has no implicit padding.
 * A range shifter in the beam line (rs_thickness_cm = 0: none) is a homogeneous slab perpendicular to the
 * central ray, crossed between the source plane and the grid (transport.cu traverse_shifter).
 */
#pragma once
#include "../core/portability.h"

#define MCP_SPOT_FIELDS(X) \
    X(float, pos_cm, 3, "point of the central ray on the source plane, cm") \
    X(float, dir, 3, "unit direction of the central ray") \
    X(float, axis_x, 3, "beam-frame transverse axis x (unit, perpendicular to dir)") \
    X(float, axis_y, 3, "beam-frame transverse axis y (unit, perpendicular to dir and axis_x)") \
    X(float, energy_mev, 1, "mean kinetic energy, MeV") \
    X(float, energy_sigma_mev, 1, "Gaussian sigma of the kinetic energy, MeV") \
    X(float, sigma_cm, 2, "spot sigma x, y at the source plane, cm") \
    X(float, div_rad, 2, "angular sigma x, y, rad") \
    X(float, corr, 2, "position-angle correlation x, y") \
    X(float, rs_thickness_cm, 1, "range shifter: physical thickness along the central ray, cm (0: none)") \
    X(float, rs_density, 1, "range shifter density, g/cm3") \
    X(float, rs_face_cm, 1, "distance from pos_cm along dir to the slab's upstream face, cm (>= 0)") \
    X(int32_t, rs_material, 1, "index of the slab's material in the run's material tables")

/* count -> the declarator's array part: none for a scalar */
#define MCP_SPOT_DIM_1
#define MCP_SPOT_DIM_2 [2]
#define MCP_SPOT_DIM_3 [3]

struct Spot {
#define MCP_X_FIELD(type, name, count, doc) type name MCP_SPOT_DIM_##count;
    MCP_SPOT_FIELDS(MCP_X_FIELD)
#undef MCP_X_FIELD
};

#define MCP_X_SIZE(type, name, count, doc) + count * sizeof(type)
static_assert(sizeof(Spot) == 0 MCP_SPOT_FIELDS(MCP_X_SIZE),
              "struct Spot has implicit padding: reorder its fields or add an explicit pad field");
#undef MCP_X_SIZE
