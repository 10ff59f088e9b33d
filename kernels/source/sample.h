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

/* Spot selection, exact to 2^-63 of the beam (the 29th/30th audits: a float32 CDF searched with the 24-bit uniform
 * quantised every spot's probability to ~6e-8 of its beam: a spot of 1e-7 was sampled 19 % too often, spots near
 * 5e-8 never or up to 2.6 times too often, 13,135 of a 20,000-spot beam with a 10^4 weight range off by > 0.1 %).
 *
 * Inverse-CDF sampling of a discrete distribution by binary search (Devroye, Non-Uniform Random Variate Generation,
 * Springer 1986, ch. III.2.1) in integer arithmetic: cdf[j] = floor(2^63 x (w_0 + ... + w_j) / sum(w)), computed
 * exactly on the host (mcproton/source.py Beam.spot_cdf, Python integers), and a key k uniform on [0, 2^63): spot j
 * is the first with cdf[j] > k, so its probability is (cdf[j] - cdf[j-1]) / 2^63 = w_j / sum(w) to within 2^-63
 * (1.1e-19) of the beam: a relative 1.1e-10 for a spot of 1e-9 of its beam.  A zero-weight spot has
 * cdf[j] == cdf[j-1] and is never the first above k; the last spot with a positive weight has cdf = 2^63 > k, so a
 * trailing zero-weight spot is never reached either (no u == 1 edge: k < 2^63 always).  One binary search
 * (log2 n compares of 64-bit integers) per primary: chosen over a Walker/Vose alias table, O(1), whose float
 * thresholds would need the same 53- or 63-bit care and whose O(n) set-up is as long, for the same exactness.
 *
 * The key's top 32 bits are the source stream's first word (as before: its top 24 bits made the old uniform), its
 * low 31 bits the first word of the history's own spot stream (MCP_STREAM_SPOT), so the source stream is consumed
 * as before and a history keeps its spot unless the old quantisation had moved it. */
#define MCP_STREAM_SPOT 0xFFFFFFFDu

MCP_FORCEINLINE MCP_HOST_DEVICE uint64_t spot_key(Rng& src)
{
    const uint32_t hi = rng_next_u32(src);
    Philox4x32Ctr c;
    c.v[0] = 0u;
    c.v[1] = MCP_STREAM_SPOT;
    c.v[2] = src.hist_lo;
    c.v[3] = src.hist_hi;
    c = mcp_philox4x32_10(c, src.key0, src.key1);
    return ((uint64_t)hi << 31) | (uint64_t)(c.v[0] >> 1);
}

/* The first spot whose cdf entry exceeds k, for k in [0, 2^63) (see above); n >= 1 and cdf[n-1] == 2^63. */
MCP_FORCEINLINE MCP_HOST_DEVICE int select_spot(const uint64_t* MCP_RESTRICT cdf, int n, uint64_t k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (cdf[mid] > k) hi = mid; else lo = mid + 1;
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
    const int k = select_spot(p.source.spot_cdf, p.source.n_spots, spot_key(rng));
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
