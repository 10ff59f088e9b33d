/* \file physics/nuclear.h
 * Nonelastic nuclear interactions of protons.
 *
 * Cross sections: ICRU Report 63 (2000) per element, combined per material by mass fraction
 * (mcproton/_physics/nuclear.py); the distance to the next event is sampled in mean free paths.
 *
 * Products (mcproton simplified model, documented in docs/physics.md): the tables give, per event, the
 * mean numbers of secondary protons, alphas and deuterons and the fraction of the incident energy given to
 * recoiling nuclei (ICRU 63 evaluations as distributed with MCsquare).  The double-differential spectra
 * are not used; instead
 *   - recoils: frac_recoil * T deposited locally;
 *   - separation energy MCP_NUC_BINDING_MEV leaves with photons/neutrons (neutral, not deposited);
 *   - n_p = floor(mult_p + u) secondary protons (at most MCP_MAX_SECONDARY_P), energies by successive
 *     uniform division of the available energy (each takes a uniform fraction of what is left), directions
 *     from quasi-free nucleon-nucleon kinematics, cos(theta) = sqrt(T_p / T), uniform azimuth;
 *   - alphas: Maxwellian evaporation spectrum (temperature MCP_NUC_EVAP_T_MEV) above the Coulomb barrier
 *     MCP_NUC_ALPHA_BARRIER_MEV, deposited locally (ranges < 1 mm);
 *   - deuterons: a uniform fraction of what is left, deposited locally (approximation);
 *   - everything left over: neutrons and photons, which leave the geometry (ledger "neutral").
 */
#pragma once
#include "../random/rng.h"

#define MCP_MAX_SECONDARY_P 4
/* Mean separation energy per nonelastic event (MeV), carried off by photons/neutrons: typical nucleon
 * separation energy of light nuclei (~8 MeV, e.g. 16O: S_p = 12.1 MeV, S_n = 15.7 MeV, 12C: 16.0/18.7 MeV;
 * AME2020) reduced for the de-excitation photons that escape. */
#define MCP_NUC_BINDING_MEV 8.0f
/* Evaporation temperature (MeV) and Coulomb barrier (MeV) for alphas from light nuclei (C, N, O):
 * order-of-magnitude values of evaporation spectra (Weisskopf-Ewing). */
#define MCP_NUC_EVAP_T_MEV 2.0f
#define MCP_NUC_ALPHA_BARRIER_MEV 3.0f

struct NuclearProducts {
    int n_p;
    float energy_p[MCP_MAX_SECONDARY_P];
    float cos_p[MCP_MAX_SECONDARY_P];
    float local;    /* MeV deposited at the interaction point */
    float neutral;  /* MeV leaving with neutral particles / binding */
};

/* Integer sample of a non-negative mean multiplicity: floor(m) + Bernoulli(frac(m)). */
MCP_FORCEINLINE MCP_HOST_DEVICE int sample_multiplicity(float mean, Rng& rng)
{
    const int n = (int)mean;
    return n + (rng_uniform(rng) < mean - (float)n ? 1 : 0);
}

MCP_FORCEINLINE MCP_HOST_DEVICE NuclearProducts sample_nonelastic(float T, float mult_p, float frac_recoil,
                                                                  float mult_alpha, float mult_d, Rng& rng)
{
    NuclearProducts out;
    out.local = mcp_min(mcp_max(frac_recoil, 0.0f), 1.0f) * T;
    out.neutral = mcp_min(MCP_NUC_BINDING_MEV, T - out.local);
    float avail = T - out.local - out.neutral;

    int n_p = sample_multiplicity(mult_p, rng);
    if (n_p > MCP_MAX_SECONDARY_P) n_p = MCP_MAX_SECONDARY_P;
    out.n_p = n_p;
    for (int k = 0; k < n_p; ++k) {
        const float e = avail * rng_uniform(rng);
        avail -= e;
        out.energy_p[k] = e;
        out.cos_p[k] = mcp_sqrt(mcp_min(e / T, 1.0f));
    }
    const int n_alpha = sample_multiplicity(mult_alpha, rng);
    for (int k = 0; k < n_alpha && avail > 0.0f; ++k) {
        /* Maxwellian E exp(-E/T_evap): sum of two exponentials with mean T_evap each. */
        const float e = MCP_NUC_ALPHA_BARRIER_MEV +
                        MCP_NUC_EVAP_T_MEV * (rng_exponential(rng) + rng_exponential(rng));
        const float d = mcp_min(e, avail);
        out.local += d;
        avail -= d;
    }
    const int n_d = sample_multiplicity(mult_d, rng);
    for (int k = 0; k < n_d; ++k) {
        const float e = avail * rng_uniform(rng);
        out.local += e;
        avail -= e;
    }
    out.neutral += avail;
    return out;
}
