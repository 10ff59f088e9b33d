/* \file physics/kinematics.h
 * Relativistic kinematics of the proton.
 */
#pragma once
#include "../core/portability.h"

/* Proton rest energy, MeV (CODATA 2018: 938.27208816 MeV; the nearest float).  The one definition: every
 * kernel header takes it from here. */
#define MCP_PROTON_MASS_MEV 938.272088f
/* Electron rest energy, MeV (CODATA 2018). */
#define MCP_ELECTRON_MASS_MEV 0.51099895f

/* beta^2 of a proton of kinetic energy T (MeV). */
MCP_FORCEINLINE MCP_HOST_DEVICE float proton_beta2(float T)
{
    const float g = 1.0f + T / MCP_PROTON_MASS_MEV;
    return 1.0f - 1.0f / (g * g);
}

/* p*v (MeV) of a proton of kinetic energy T: pv = T (T + 2 M) / (T + M). */
MCP_FORCEINLINE MCP_HOST_DEVICE float proton_pv(float T)
{
    return T * (T + 2.0f * MCP_PROTON_MASS_MEV) / (T + MCP_PROTON_MASS_MEV);
}

/* Lab polar cosine of a proton that leaves an elastic p-p collision with kinetic energy t_out, when a proton of
 * kinetic energy T hits one at rest.  Relativistic two-body kinematics of equal masses M:
 *   cos^2 theta = t_out (T + 2M) / (T (t_out + 2M))
 * (the non-relativistic t_out / T is 2.5 % smaller at T = 200 MeV, t_out = T/2: 45.0 instead of 43.6 degrees).
 * The kinetic energy shared in the lab, t_out = T (1 + cos theta_cm) / 2, is exact relativistically too. */
MCP_FORCEINLINE MCP_HOST_DEVICE float pp_elastic_cos_lab(float t_out, float T)
{
    const float c2 = t_out * (T + 2.0f * MCP_PROTON_MASS_MEV) / (T * (t_out + 2.0f * MCP_PROTON_MASS_MEV));
    return mcp_sqrt(mcp_min(mcp_max(c2, 0.0f), 1.0f));
}
