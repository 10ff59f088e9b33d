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
