/* \file random/rng.h
 * Per-track random stream and the conversions from bits to distributions, defined once for both backends.
 *
 * Each track (the primary, or secondary number t of a history) owns the Philox substream
 *   counter = { block, t, history_lo, history_hi },  key = seed,
 * so a history's random numbers do not depend on thread count, launch grid or backend.  Source sampling
 * uses track id 0xFFFFFFFF (its own named stream; the spot key also 0xFFFFFFFD, source/sample.h), so adding a
 * source option never reshuffles transport.
 */
#pragma once
#include "philox.h"

#define MCP_STREAM_SOURCE 0xFFFFFFFFu

struct Rng {
    uint32_t key0, key1;
    uint32_t track, hist_lo, hist_hi;
    uint32_t block;  /* next counter block */
    uint32_t buf[4];
    int used;        /* number of words of buf consumed */
    float spare_gauss;
    int has_spare;
};

MCP_FORCEINLINE MCP_HOST_DEVICE void rng_init(Rng& r, uint64_t seed, uint64_t history, uint32_t track)
{
    r.key0 = (uint32_t)seed;
    r.key1 = (uint32_t)(seed >> 32);
    r.track = track;
    r.hist_lo = (uint32_t)history;
    r.hist_hi = (uint32_t)(history >> 32);
    r.block = 0;
    r.used = 4;
    r.has_spare = 0;
    r.spare_gauss = 0.0f;
}

MCP_FORCEINLINE MCP_HOST_DEVICE uint32_t rng_next_u32(Rng& r)
{
    if (r.used == 4) {
        Philox4x32Ctr c;
        c.v[0] = r.block++;
        c.v[1] = r.track;
        c.v[2] = r.hist_lo;
        c.v[3] = r.hist_hi;
        c = mcp_philox4x32_10(c, r.key0, r.key1);
        r.buf[0] = c.v[0];
        r.buf[1] = c.v[1];
        r.buf[2] = c.v[2];
        r.buf[3] = c.v[3];
        r.used = 0;
    }
    return r.buf[r.used++];
}

/* Uniform on (0, 1]: the top 24 bits k, as (k + 0.5) / 2^24 rounded to float32.  Below 0.5 that is the centre of
   k's bin; at and above 0.5, k + 0.5 is not representable and rounds to an even neighbour (a 2^-23 grid), and
   k = 2^24 - 1 gives exactly 1.0 (once in 2^24 draws).  Never 0, so log(u) is finite; callers must allow u == 1.
   Too coarse to pick a spot (source/sample.h select_spot takes a 63-bit integer key).  The mean is unbiased to
   float32 precision. */
MCP_FORCEINLINE MCP_HOST_DEVICE float mcp_u32_to_uniform(uint32_t x)
{
    return ((float)(x >> 8) + 0.5f) * 5.9604644775390625e-08f;
}

MCP_FORCEINLINE MCP_HOST_DEVICE float rng_uniform(Rng& r) { return mcp_u32_to_uniform(rng_next_u32(r)); }

/* Standard normal by the Box-Muller transform; the second variate is kept for the next call. */
MCP_FORCEINLINE MCP_HOST_DEVICE float rng_gauss(Rng& r)
{
    if (r.has_spare) {
        r.has_spare = 0;
        return r.spare_gauss;
    }
    const float u1 = rng_uniform(r);
    const float u2 = rng_uniform(r);
    const float rad = mcp_sqrt(-2.0f * mcp_log(u1));
    float s, c;
    mcp_sincospi(2.0f * u2, &s, &c);
    r.spare_gauss = rad * s;
    r.has_spare = 1;
    return rad * c;
}

/* Exponential with mean 1 (number of mean free paths). */
MCP_FORCEINLINE MCP_HOST_DEVICE float rng_exponential(Rng& r) { return -mcp_log(rng_uniform(r)); }
