/* \file source/spot.h
 * A Gaussian pencil beam at its source plane (mirror: mcproton/source.py SPOT_DTYPE).
 */
#pragma once
#include "../core/portability.h"

struct Spot {
    float pos[3];      /* point of the central ray on the source plane, cm */
    float dir[3];      /* unit direction of the central ray */
    float axis_x[3];   /* beam-frame transverse axes (unit, perpendicular to dir) */
    float axis_y[3];
    float energy;      /* mean kinetic energy, MeV */
    float energy_sigma;/* Gaussian sigma of the kinetic energy, MeV */
    float sigma[2];    /* spot sigma x, y at the source plane, cm */
    float div[2];      /* angular sigma x, y, rad */
    float corr[2];     /* position-angle correlation x, y */
    /* Range shifter in the beam line (rs_thickness_cm = 0: none): a homogeneous slab perpendicular to the
     * central ray, crossed between the source plane and the grid (transport.cu traverse_shifter). */
    float rs_thickness_cm; /* physical thickness along the central ray, cm */
    float rs_density;      /* g/cm3 */
    float rs_face_cm;      /* distance from pos along dir to the slab's upstream face, cm (>= 0) */
    int32_t rs_material;   /* index of the slab's material in the run's material tables */
};
