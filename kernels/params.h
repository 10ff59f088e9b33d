/* \file params.h
 * The immutable run parameters handed to the kernels: one by-value struct of table pointers and scalars,
 * mirrored field by field by mcproton/_kernels/layout.py (PARAMS_DTYPE) and checked by a layout probe.
 * Pointers are device addresses on the GPU and host addresses on the CPU.
 *
 * Units: lengths cm, energies MeV, densities g/cm3, mass stopping powers MeV cm2/g, mass cross sections
 * cm2/g, ranges g/cm2.  Tallies are 64-bit integers in units of MCP_TALLY_UNIT_MEV (fixed point), so their
 * sums do not depend on the order of the threads.
 */
#pragma once
#include "core/portability.h"
#include "source/spot.h"

/* Fixed-point unit of the energy tallies and ledger: 2^-24 MeV (6e-8 MeV), range +-5.5e11 MeV. */
#define MCP_TALLY_SCALE 16777216.0f
/* LET numerator unit: 2^-20 MeV keV/um. */
#define MCP_LET_SCALE 1048576.0f

/* Columns of the per-(material, energy-bin) record of the energy table. */
enum EnergyColumn {
    COL_RANGE = 0,        /* CSDA range, g/cm2 */
    COL_STOP = 1,         /* electronic mass stopping power, MeV cm2/g */
    COL_SPR_W = 2,        /* (S/rho)_water / (S/rho)_material */
    COL_NUC_SIGMA = 3,    /* nonelastic mass cross section, cm2/g */
    COL_MULT_P = 4,       /* secondary protons per nonelastic event */
    COL_FRAC_RECOIL = 5,  /* fraction of the incident energy to recoils (local) */
    COL_MULT_ALPHA = 6,   /* alphas per event */
    COL_MULT_D = 7,       /* deuterons per event */
    COL_PP_SIGMA = 8,     /* elastic scattering on hydrogen (p-p), mass cross section, cm2/g */
    COL_EL_SIGMA = 9,     /* nuclear elastic scattering on nuclei heavier than H, mass cross section, cm2/g */
    COL_HARD_SIGMA = 10,  /* sum of columns 3, 8 and 9: all hard nuclear events (one lookup per step) */
    COL_RANGE_B = 11,     /* b = (1 + k) dlnE of the bin starting here, S_tot ~ E^-k inside it (range interpolation) */
    COL_HARD_SIGMA_MAX = 12, /* majorant of column 10 over the energies one step can reach (null-collision sampling) */
    N_ENERGY_COLUMNS = 16 /* columns 13-15 spare (16-float records) */
};

/* Columns of the per-material property record. */
enum MaterialColumn {
    MAT_XS = 0,         /* Gottschalk scattering length X_S, g/cm2 */
    MAT_Z_OVER_A = 1,   /* <Z/A>, mol/g */
    MAT_RANGE_CUT = 2,  /* CSDA range at the cut-off energy, g/cm2 */
    MAT_EL_A = 3,       /* effective mass number of the nuclear elastic targets (0: none) */
    N_MATERIAL_COLUMNS = 4
};

/* Ledger entries (fixed point, MCP_TALLY_SCALE). */
enum LedgerEntry {
    LEDGER_INCIDENT = 0,   /* kinetic energy of the primaries leaving the source */
    LEDGER_DEPOSITED = 1,  /* energy deposited in the grid (sum of the dose tally) */
    LEDGER_ESCAPED = 2,    /* kinetic energy of protons leaving the grid */
    LEDGER_MISSED = 3,     /* kinetic energy of primaries that never reach the grid */
    LEDGER_NEUTRAL = 4,    /* nonelastic energy to neutrons, photons and binding (leaves the geometry) */
    LEDGER_PRIMARIES = 5,  /* number of primaries (count, not MeV) */
    LEDGER_NUCLEAR_EVENTS = 6, /* nonelastic events (count) */
    LEDGER_SECONDARIES = 7,    /* secondary protons produced (count) */
    LEDGER_ERRORS = 8,         /* tracks stopped for a numerical error (count): must be 0 */
    LEDGER_STACK_FULL = 9,     /* secondaries dropped because the per-history stack was full (count) */
    LEDGER_STEPS = 10,         /* transport steps (count) */
    LEDGER_PP_ELASTIC = 11,    /* elastic scatterings on hydrogen in the grid (count) */
    LEDGER_NUC_ELASTIC = 12,   /* nuclear elastic scatterings on nuclei heavier than hydrogen (count) */
    LEDGER_SHIFTER = 13,       /* energy lost in range shifters (fixed point): ionisation, nuclear recoils, the
                                  primaries that end there and the secondaries made there (not transported) */
    LEDGER_SHIFTER_REMOVED = 14, /* primaries that end in a range shifter (count): stopped or nonelastic event */
    N_LEDGER = 16
};

struct Params {
    /* --- physics tables --- */
    const float* energy_table;   /* [n_mat][n_e][N_ENERGY_COLUMNS] on the ln(E) grid */
    const int32_t* range_index;  /* [n_mat][n_r] for each ln(range) grid point, the last energy bin whose
                                    range is <= it: the start of the inverse-range search */
    const float* material_props; /* [n_mat][N_MATERIAL_COLUMNS] */
    /* --- geometry --- */
    const uint8_t* material_index; /* [nz][ny][nx] */
    const float* density;          /* [nz][ny][nx] g/cm3 */
    /* --- source --- */
    const Spot* spots;           /* [n_spots] */
    const float* spot_cdf;       /* [n_spots], last = 1 */
    /* --- tallies (zeroed per batch) --- */
    int64_t* edep;         /* [nvox] energy deposited (all particles), fixed point */
    int64_t* edep_water;   /* [nvox] energy x (S/rho)_w/(S/rho)_m, fixed point */
    int64_t* edep_proton;  /* [nvox] energy deposited by protons (LET denominator), fixed point */
    int64_t* let_num;      /* [nvox] sum of proton energy x LET (keV/um), MCP_LET_SCALE fixed point */
    int64_t* ledger;       /* [N_LEDGER] */
    /* --- scalars --- */
    float log_e_min, inv_dlog_e;  /* ln(E/MeV) of bin 0 and 1/bin width */
    float log_r_min, inv_dlog_r;  /* ln(R/(g/cm2)) of bin 0 and 1/bin width */
    int32_t n_e, n_r, n_mat, n_spots;
    int32_t nx, ny, nz, flags;
    float vx, vy, vz;             /* voxel size, cm */
    float e_cut;                  /* MeV */
    float max_eloss_fraction;
    float max_step;               /* cm */
    float dlog_e;                 /* ln-energy bin width (1 / inv_dlog_e) */
    float pad1;
    uint64_t seed;
    int64_t tally_stride; /* CPU: voxels per tally slot (0 = one shared, atomic tally) */
    float inv_vx, inv_vy, inv_vz; /* 1 / voxel size, 1/cm */
    int32_t n_slots;      /* CPU: tally slots; thread t writes slot t % n_slots (atomically when threads share) */
    /* [ceil(nvox / 2^MCP_TOUCH_SHIFT)] or null: set to 1 for every block of 2^MCP_TOUCH_SHIFT consecutive voxels
     * (flat index) that a batch scores into, so that the host reads and clears only those blocks of a large
     * grid instead of the whole tallies (mcproton/run.py, Simulation.run_histories_sparse). */
    uint8_t* touched;
    /* Null in a run.  For the SIMT-efficiency proxy (mcproton/_kernels/simt.py), on the CPU backend only (the GPU
     * kernel is compiled without the counting): [n_histories][MCP_HISTORY_STEP_SLOTS] zeroed counters, the steps of
     * each track of each history of the launch (index = history - first_history): slot 0 scratch, 1 the number of
     * tracks, 2 the primary, 3.. the secondaries in the order they ran on the history's thread (the last slot sums
     * the rest). */
    int64_t* history_steps;
};

#define MCP_HISTORY_STEP_SLOTS 8

/* Voxels per block of Params::touched: 32 (a pencil beam's batch on a 512 x 512 x 200 grid touches ~2 % of the
 * blocks with 32 voxels, 2.6 % with 64, and 1 % of the voxels carry dose). */
#define MCP_TOUCH_SHIFT 5

/* Bits of Params::flags. */
#define MCP_FLAG_STRAGGLING 1
#define MCP_FLAG_MSC 2
#define MCP_FLAG_NUCLEAR 4
/* Tallies are shared between threads: add atomically (always on the GPU; on the CPU with several threads
 * and one shared slot). */
#define MCP_FLAG_SHARED_TALLY 8
