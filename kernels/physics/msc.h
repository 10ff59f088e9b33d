/* \file physics/msc.h
 * Multiple Coulomb scattering: Gaussian angular and correlated lateral deflection per step, with
 * Gottschalk's differential Highland scattering power (B. Gottschalk, "On the scattering power of
 * radiotherapy protons", Med. Phys. 37 (2010) 352-367, eq. for T_dM):
 *   T_dM = f_dM(pv, p1v1) (E_s / pv)^2 / X_S,   E_s = 15.0 MeV,
 *   f_dM = 0.5244 + 0.1975 lg(1 - (pv/p1v1)^2) + 0.2320 lg(pv) - 0.0098 lg(pv) lg(1 - (pv/p1v1)^2)
 * (pv and p1v1 in MeV, lg = log10, p1v1 = pv of the track at its start, X_S the scattering length).
 * Over a step s the plane-projected angle variance is T s and the moments of a Fermi-Eyges step are
 *   <theta^2> = T s,  <theta x> = T s^2 / 2,  <x^2> = T s^3 / 3.
 */
#pragma once
#include "kinematics.h"

#define MCP_GOTTSCHALK_ES_MEV 15.0f
/* Lower bound on 1 - (pv/p1v1)^2: f_dM diverges at a track's first step; 1e-4 corresponds to the first
 * ~10 um of a 150 MeV proton in water, where the deflection is negligible. */
#define MCP_FDM_MIN_ARG 1e-4f

/* Scattering power (rad^2 per g/cm2) at pv (MeV) for a track that started with p1v1 (MeV). */
MCP_FORCEINLINE MCP_HOST_DEVICE float scattering_power_dm(float pv, float p1v1, float x_s_g_cm2)
{
    const float r = pv / p1v1;
    const float l1 = mcp_log10(mcp_max(1.0f - r * r, MCP_FDM_MIN_ARG));
    const float l2 = mcp_log10(pv);
    float f = 0.5244f + 0.1975f * l1 + 0.2320f * l2 - 0.0098f * l2 * l1;
    f = mcp_max(f, 0.0f);
    const float a = MCP_GOTTSCHALK_ES_MEV / pv;
    return f * a * a / x_s_g_cm2;
}
