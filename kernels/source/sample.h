/* \file source/sample.h
 * Sampling a primary proton from the weighted list of Gaussian pencil beams.
 */
#pragma once
#include "../random/rng.h"
#include "../params.h"

struct Primary {
    float x, y, z;   /* cm, grid-corner frame, on the source plane */
    float u, v, w;   /* unit direction */
    float energy;    /* MeV */
    int spot;        /* index of the spot it was sampled from */
};

/* Spot index for u in (0,1]: first spot whose cumulative probability exceeds u (binary search); u == 1, or a u
   above a float32 CDF that ends just below 1, gives the last spot (the readers drop zero-weight spots). */
MCP_FORCEINLINE MCP_HOST_DEVICE int select_spot(const float* MCP_RESTRICT cdf, int n, float u)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (cdf[mid] > u) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* Correlated Gaussian (position, angle) in one transverse plane. */
MCP_FORCEINLINE MCP_HOST_DEVICE void sample_phase_space(float sigma, float div, float corr, Rng& rng,
                                                        float* pos, float* angle)
{
    const float z1 = rng_gauss(rng);
    const float z2 = rng_gauss(rng);
    *pos = sigma * z1;
    *angle = div * (corr * z1 + mcp_sqrt(mcp_max(1.0f - corr * corr, 0.0f)) * z2);
}

MCP_FORCEINLINE MCP_HOST_DEVICE Primary sample_primary(const Params& p, Rng& rng)
{
    const int k = select_spot(p.source.spot_cdf, p.source.n_spots, rng_uniform(rng));
    const Spot& s = p.source.spots[k];
    Primary out;
    out.spot = k;
    out.energy = s.energy_mev;
    if (s.energy_sigma_mev > 0.0f)
        out.energy = mcp_max(s.energy_mev + s.energy_sigma_mev * rng_gauss(rng), 0.0f);
    float ox, tx, oy, ty;
    sample_phase_space(s.sigma_cm[0], s.div_rad[0], s.corr[0], rng, &ox, &tx);
    sample_phase_space(s.sigma_cm[1], s.div_rad[1], s.corr[1], rng, &oy, &ty);
    out.x = s.pos_cm[0] + ox * s.axis_x[0] + oy * s.axis_y[0];
    out.y = s.pos_cm[1] + ox * s.axis_x[1] + oy * s.axis_y[1];
    out.z = s.pos_cm[2] + ox * s.axis_x[2] + oy * s.axis_y[2];
    /* Direction: the central ray tilted by the projected angles (tan theta along each axis). */
    float u = s.dir[0] + tx * s.axis_x[0] + ty * s.axis_y[0];
    float v = s.dir[1] + tx * s.axis_x[1] + ty * s.axis_y[1];
    float w = s.dir[2] + tx * s.axis_x[2] + ty * s.axis_y[2];
    const float inv = mcp_rsqrt(u * u + v * v + w * w);
    out.u = u * inv;
    out.v = v * inv;
    out.w = w * inv;
    return out;
}
