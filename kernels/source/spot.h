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
    float pad[2];
};
