/* \file random/philox.h
 * Philox4x32-10 counter-based generator (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy
 * as 1, 2, 3", SC'11).  Our own implementation; checked against the Random123 known-answer vectors in
 * tests/kernels/random/test_philox.py.
 *
 * Stream layout used by mcproton (see docs in random/rng.h):
 *   key     = run seed (64 bits)
 *   counter = { draw block, track id within the history, history index lo, history index hi }
 */
#pragma once
#include "../core/portability.h"

struct Philox4x32Ctr { uint32_t v[4]; };

/* Multipliers and Weyl constants of Philox4x32 (Salmon et al. 2011, Table 2 / Random123). */
#define MCP_PHILOX_M0 0xD2511F53u
#define MCP_PHILOX_M1 0xCD9E8D57u
#define MCP_PHILOX_W0 0x9E3779B9u
#define MCP_PHILOX_W1 0xBB67AE85u

MCP_FORCEINLINE MCP_HOST_DEVICE uint32_t mcp_mulhilo32(uint32_t a, uint32_t b, uint32_t* hi)
{
#if MCP_DEVICE_COMPILE
    *hi = __umulhi(a, b);
    return a * b;
#else
    const uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
#endif
}

MCP_FORCEINLINE MCP_HOST_DEVICE Philox4x32Ctr mcp_philox4x32_10(Philox4x32Ctr c, uint32_t k0, uint32_t k1)
{
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += MCP_PHILOX_W0;
            k1 += MCP_PHILOX_W1;
        }
        uint32_t hi0, hi1;
        const uint32_t lo0 = mcp_mulhilo32(MCP_PHILOX_M0, c.v[0], &hi0);
        const uint32_t lo1 = mcp_mulhilo32(MCP_PHILOX_M1, c.v[2], &hi1);
        Philox4x32Ctr o;
        o.v[0] = hi1 ^ c.v[1] ^ k0;
        o.v[1] = lo1;
        o.v[2] = hi0 ^ c.v[3] ^ k1;
        o.v[3] = lo0;
        c = o;
    }
    return c;
}
