/* \file physics/straggling.h
 * Energy-loss straggling: Gaussian with the Bohr variance and its relativistic correction,
 *   Omega^2 = K m_e c^2 <Z/A> rho s (1 - beta^2/2) / (1 - beta^2)        [MeV^2]
 * K = 4 pi N_A r_e^2 m_e c^2 = 0.307075 MeV cm2/mol (PDG, Review of Particle Physics, "Passage of
 * particles through matter"); rho s in g/cm2; <Z/A> in mol/g.  (Bohr 1915; relativistic factor as in
 * ICRU Report 49 and Geant4's G4UniversalFluctuation Gaussian regime.)
 */
#pragma once
#include "kinematics.h"

#define MCP_K_BETHE 0.307075f

MCP_FORCEINLINE MCP_HOST_DEVICE float bohr_variance_mev2(float T, float z_over_a, float mass_thickness_g_cm2)
{
    const float b2 = proton_beta2(T);
    return MCP_K_BETHE * MCP_ELECTRON_MASS_MEV * z_over_a * mass_thickness_g_cm2 * (1.0f - 0.5f * b2) /
           (1.0f - b2);
}

/* Sample the energy lost over a step with mean `mean` (MeV) and straggling variance `var` (MeV^2).
 * Thick steps (sigma < mean / 4): Gaussian (clipping at 0 and at the available energy then removes < 3e-5
 * of the probability, no measurable bias).  Thin steps (low density, e.g. air, where the Gaussian would go
 * negative and clipping would inflate the mean energy loss several-fold): a log-normal with the same mean
 * and variance, which is non-negative and skewed to high losses like the Landau/Vavilov distributions of
 * thin absorbers. */
MCP_FORCEINLINE MCP_HOST_DEVICE float sample_energy_loss(float mean, float var, float available, float z)
{
    if (mean <= 0.0f) return 0.0f;
    const float sigma = mcp_sqrt(var);
    float de;
    if (sigma < 0.25f * mean) {
        de = mean + sigma * z;
    } else {
        const float s2 = mcp_log(1.0f + var / (mean * mean));
        de = mean * mcp_exp(mcp_sqrt(s2) * z - 0.5f * s2);
    }
    return mcp_min(mcp_max(de, 0.0f), available);
}
