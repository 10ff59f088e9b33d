/* \file physics/kinematics.h
 * Relativistic kinematics of the proton.
 */
#pragma once
#include "../core/portability.h"

/* Proton rest energy, MeV (CODATA 2018: 938.27208816 MeV). */
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
