/* \file grid/table_lookup.h
 * Lookups on uniform grids in the logarithm of the abscissa, with linear interpolation between bins
 * and clamping at both ends (the Python table builder covers the whole energy range that can occur).
 */
#pragma once
#include "../core/portability.h"

struct GridPoint {
    int index;   /* lower bin */
    float frac;  /* position between bin index and index + 1 */
};

MCP_FORCEINLINE MCP_HOST_DEVICE GridPoint log_grid_point(float x, float log_min, float inv_dlog, int n)
{
    float t = (mcp_log(x) - log_min) * inv_dlog;
    t = mcp_min(mcp_max(t, 0.0f), (float)(n - 1) - 1e-3f);
    GridPoint g;
    g.index = (int)t;
    g.frac = t - (float)g.index;
    return g;
}

MCP_FORCEINLINE MCP_HOST_DEVICE float lerp_row(const float* MCP_RESTRICT row, GridPoint g, int stride, int col)
{
    const float a = row[g.index * stride + col];
    const float b = row[(g.index + 1) * stride + col];
    return a + g.frac * (b - a);
}
