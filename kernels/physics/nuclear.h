/* \file physics/nuclear.h
 * Nuclear interactions of protons: nonelastic reactions and nuclear elastic scattering (end of file).
 *
 * Cross sections: ICRU Report 63 (2000) per element, combined per material by mass fraction
 * (mcproton/_physics/nuclear.py); the distance to the next event is sampled in mean free paths.
 *
 * Products (mcproton two-component model, documented in docs/physics.md): the ICRU 63 tables give, per
 * event, the mean numbers of secondary protons, alphas and deuterons and the fraction of the incident
 * energy T given to recoiling nuclei (evaluations as distributed with MCsquare).  The double-differential
 * spectra are not used; instead a leading fast nucleon plus an evaporation-like remainder:
 *   - recoils: frac_recoil * T given to the recoiling nucleus (laid along its range, scoring/fragments.h);
 *   - separation energy MCP_NUC_BINDING_MEV carried off by de-excitation photons (neutral);
 *   - evaporation: alphas (floor(mult_alpha + u)), deuterons (floor(mult_d + u)) and the secondary protons
 *     after the first one (with as many evaporation neutrons) get Maxwellian energies (temperature
 *     MCP_NUC_EVAP_T_MEV, alphas and deuterons above a Coulomb barrier); alphas and deuterons are deposited
 *     along their ranges (scoring/fragments.h), evaporation protons transported isotropically,
 *     neutrons leave (neutral);
 *   - the leading proton (if any) takes sqrt(u) of the energy left (mean 2/3: the forward, high-energy
 *     pre-equilibrium / quasi-free component of (p, xp) spectra), direction from quasi-free kinematics
 *     (p-p scattering on a nucleon at rest, relativistic: pp_elastic_cos_lab in kinematics.h; the
 *     non-relativistic form is cos(theta) = sqrt(T_p / T)); the rest leaves with fast neutrons and photons
 *     (neutral).
 * The mean 2/3 share is a model parameter: with it the total energy deposited per primary in water agrees
 * with TOPAS (Geant4 QGSP_BIC) within 0.5 % at 70-200 MeV (validation/topas_idd).
 */
#pragma once
#include "../random/rng.h"
#include "kinematics.h"

#define MCP_MAX_SECONDARY_P 4
#define MCP_MAX_FRAGMENTS 4   /* alphas + deuterons laid along their ranges; more are deposited at the event */
/* Mean separation energy per nonelastic event (MeV), carried off by photons/neutrons: typical nucleon
 * separation energy of light nuclei (~8 MeV, e.g. 16O: S_p = 12.1 MeV, S_n = 15.7 MeV, 12C: 16.0/18.7 MeV;
 * AME2020) reduced for the de-excitation photons that escape. */
#define MCP_NUC_BINDING_MEV 8.0f
/* Evaporation temperature (MeV) and Coulomb barrier (MeV) for alphas from light nuclei (C, N, O), the
 * evaporation (Maxwellian) spectrum of Weisskopf & Ewing (Phys. Rev. 57 (1940) 472):
 *   T = sqrt(E* / a), the Fermi-gas nuclear temperature with the level-density parameter a ~ A / 8 MeV^-1
 *   (the empirical rule of thumb of evaporation models): 16O (a = 2 MeV^-1) with ~12.5 MeV of excitation left
 *   after the fast nucleon gives T = 2.5 MeV;
 *   V_C = 1.44 MeV fm * z Z / (r0 (a^1/3 + A^1/3)), r0 = 1.5 fm: an alpha leaving 12C after 16O breaks up
 *   faces 1.44 * 2 * 6 / (1.5 * (4^1/3 + 12^1/3)) = 2.97 MeV (12C + alpha), so 3 MeV.
 * One value serves C, N and O (the same formulas give T 2.5-2.9 MeV and V_C 2.1 (8Be + alpha from 12C) to
 * 3.0 MeV): oxygen's, the most abundant heavy nucleus in tissue. */
#define MCP_NUC_EVAP_T_MEV 2.5f
#define MCP_NUC_ALPHA_BARRIER_MEV 3.0f

struct NuclearProducts {
    int n_p;
    float energy_p[MCP_MAX_SECONDARY_P];
    float cos_p[MCP_MAX_SECONDARY_P];
    int n_frag;
    int frag_alpha;                       /* bit k set: fragment k is an alpha, else a deuteron */
    float frag_e[MCP_MAX_FRAGMENTS];      /* MeV */
    float recoil;   /* MeV of the recoiling nucleus */
    float local;    /* MeV deposited at the interaction point */
    float neutral;  /* MeV leaving with neutral particles / binding */
};

/* Integer sample of a non-negative mean multiplicity: floor(m) + Bernoulli(frac(m)). */
MCP_FORCEINLINE MCP_HOST_DEVICE int sample_multiplicity(float mean, Rng& rng)
{
    const int n = (int)mean;
    return n + (rng_uniform(rng) < mean - (float)n ? 1 : 0);
}

MCP_FORCEINLINE MCP_HOST_DEVICE float maxwellian_energy(Rng& rng)
{
    /* E exp(-E/T): the sum of two exponentials of mean T. */
    return MCP_NUC_EVAP_T_MEV * (rng_exponential(rng) + rng_exponential(rng));
}

MCP_FORCEINLINE MCP_HOST_DEVICE NuclearProducts sample_nonelastic(float T, float mult_p, float frac_recoil,
                                                                  float mult_alpha, float mult_d, Rng& rng)
{
    NuclearProducts out;
    out.recoil = mcp_min(mcp_max(frac_recoil, 0.0f), 1.0f) * T;
    out.local = 0.0f;
    out.neutral = mcp_min(MCP_NUC_BINDING_MEV, T - out.recoil);
    float avail = T - out.recoil - out.neutral;

    const int n_alpha = sample_multiplicity(mult_alpha, rng);
    const int n_d = sample_multiplicity(mult_d, rng);
    out.n_frag = 0;
    out.frag_alpha = 0;
    for (int k = 0; k < n_alpha + n_d && avail > 0.0f; ++k) {
        const float d = mcp_min(MCP_NUC_ALPHA_BARRIER_MEV + maxwellian_energy(rng), avail);
        if (out.n_frag < MCP_MAX_FRAGMENTS) {
            if (k < n_alpha) out.frag_alpha |= 1 << out.n_frag;
            out.frag_e[out.n_frag++] = d;
        } else {
            out.local += d;
        }
        avail -= d;
    }
    int n_p = sample_multiplicity(mult_p, rng);
    if (n_p > MCP_MAX_SECONDARY_P) n_p = MCP_MAX_SECONDARY_P;
    out.n_p = 0;
    /* evaporation protons (all but the leading one) and as many evaporation neutrons */
    for (int k = 1; k < n_p && avail > 0.0f; ++k) {
        const float ep = mcp_min(maxwellian_energy(rng), avail);
        avail -= ep;
        const float en = mcp_min(maxwellian_energy(rng), avail);
        avail -= en;
        out.neutral += en;
        out.energy_p[out.n_p] = ep;
        out.cos_p[out.n_p] = 2.0f * rng_uniform(rng) - 1.0f;  /* isotropic */
        ++out.n_p;
    }
    if (n_p > 0 && avail > 0.0f) {
        const float e = avail * mcp_sqrt(rng_uniform(rng));
        avail -= e;
        out.energy_p[out.n_p] = e;
        out.cos_p[out.n_p] = pp_elastic_cos_lab(e, T);
        ++out.n_p;
    }
    out.neutral += avail;  /* fast neutrons and photons */
    return out;
}

/* ---------------------------------------------------------------------------------------------------------
 * Nuclear elastic scattering of a proton on a nucleus of mass number A (heavier than hydrogen).
 *
 * Cross sections: Barashenkov's total - inelastic (mcproton/_physics/nuclear.py, the values Geant4 uses).
 * Momentum transfer: the diffraction peak d(sigma)/d|t| ~ exp(-|t| / <|t|>).  For 16O the mean recoil kinetic
 * energy is Fippel & Soukup's parametrisation of the ICRU 63 elastic angular distributions (Med. Phys. 31
 * (2004) 2263, VMCpro):  <T_r> = 0.65 exp(-0.0013 T) - 0.71 exp(-0.0177 T)  MeV  (T in MeV), and
 * <|t|>_O = 2 M_O <T_r>.  Other nuclei: the slope of the diffraction peak grows with the nuclear radius
 * squared, <|t|>_A = <|t|>_O (16 / A)^(2/3).  |t| is sampled from the exponential truncated at the
 * kinematic maximum; the recoil nucleus takes T_r = |t| / (2 M_A) (deposited locally), the proton keeps
 * T - T_r and is deflected by the angle that conserves momentum.
 */
#define MCP_AMU_MEV 931.494f          /* atomic mass unit, MeV (CODATA 2018: 931.49410242) */
/* MCP_PROTON_MASS_MEV: physics/kinematics.h (one definition: this header had its own 938.272f) */

struct ElasticOutcome {
    float t_recoil;   /* kinetic energy given to the nucleus, MeV */
    float cos_theta;  /* polar cosine of the proton's deflection (laboratory) */
};

MCP_FORCEINLINE MCP_HOST_DEVICE float elastic_mean_recoil_o16_mev(float T)
{
    return mcp_max(0.65f * mcp_exp(-0.0013f * T) - 0.71f * mcp_exp(-0.0177f * T), 1e-3f);
}

MCP_FORCEINLINE MCP_HOST_DEVICE ElasticOutcome sample_nuclear_elastic(float T, float A, Rng& rng)
{
    const float mp = MCP_PROTON_MASS_MEV;
    const float M = A * MCP_AMU_MEV;
    /* M_O of Fippel & Soukup's <|t|>_O: oxygen's standard atomic weight (IUPAC, 15.9994 u); the 16O atomic
     * mass (AME2020, 15.99491 u) is 0.03 % lighter, far inside the parametrisation's own accuracy */
    const float m_o = 15.9994f * MCP_AMU_MEV;
    const float mean_t = 2.0f * m_o * elastic_mean_recoil_o16_mev(T) * mcp_exp(0.66666667f * mcp_log(16.0f / A));
    /* largest recoil energy (head-on): 2 M p^2 / ((mp + M)^2 + 2 M T), p^2 = T (T + 2 mp) */
    const float p1sq = T * (T + 2.0f * mp);
    const float tr_max = 2.0f * M * p1sq / ((mp + M) * (mp + M) + 2.0f * M * T);
    const float t_max = 2.0f * M * tr_max;
    /* truncated exponential in |t| */
    const float u = rng_uniform(rng);
    const float t = -mean_t * mcp_log(1.0f - u * (1.0f - mcp_exp(-t_max / mean_t)));
    ElasticOutcome out;
    out.t_recoil = mcp_min(t / (2.0f * M), tr_max);
    const float T3 = T - out.t_recoil;
    const float p3sq = T3 * (T3 + 2.0f * mp);
    const float qsq = out.t_recoil * (out.t_recoil + 2.0f * M);  /* recoil momentum squared */
    const float c = (p1sq + p3sq - qsq) / (2.0f * mcp_sqrt(p1sq * p3sq));
    out.cos_theta = mcp_min(mcp_max(c, -1.0f), 1.0f);
    return out;
}
