/* \file params.h
 * The kernel/Python contract: the immutable run parameters handed to the kernels (one by-value struct of table
 * pointers and scalars), the ledger entries, the table columns, the flags and the fixed-point scales.
 * Pointers are device addresses on the GPU and host addresses on the CPU.
 *
 * Each list is written ONCE, here, as an X-macro (MCP_PARAMS_ROLES and its MCP_PARAMS_<ROLE> field lists,
 * MCP_LEDGER_ENTRIES, MCP_ENERGY_COLUMNS, MCP_MATERIAL_COLUMNS, MCP_FLAGS); the kernels expand them into the
 * structs and enums below, and the Python side (mcproton/_kernels/layout.py) builds PARAMS_DTYPE (nested like
 * struct Params), LEDGER, the column maps and the flags by parsing this file (and SPOT_DTYPE from
 * source/spot.h's MCP_SPOT_FIELDS) with a strict parser that fails on anything it does not understand.  So
 * write every list entry in the form its list's comment shows (a long description may go on as adjacent string
 * literals, without quotes or backslash escapes inside), and the scalar #defines read by Python as
 * `#define NAME <number>`.
 * The layout probe (probes.cu mcp_probe_layout, tests/kernels/test_layout.py) checks the offset and size of
 * every role and the offset of every field against the NumPy dtype, and static_asserts below check at compile
 * time that Params has no implicit padding.
 *
 * Units: lengths cm, energies MeV, densities g/cm3, mass stopping powers MeV cm2/g, mass cross sections
 * cm2/g, ranges g/cm2.  Tallies are 64-bit integers in units of MCP_TALLY_SCALE per MeV (fixed point), so their
 * sums do not depend on the order of the threads.
 */
#pragma once
#include "core/portability.h"
#include "source/spot.h"

/* Fixed-point unit of the energy tallies and ledger: 2^-24 MeV (6e-8 MeV), range +-5.5e11 MeV. */
#define MCP_TALLY_SCALE 16777216.0f
/* LET numerator unit: 2^-16 MeV x MeV cm2/g.  The numerator is the deposit times the *mass* stopping power, which
 * does not depend on the density (5-900 MeV cm2/g for protons above the cut-off), so a deposit in air is as finely
 * resolved as one in water; the host multiplies by 0.1 x the voxel's density for keV/um (mcproton/_run/result.py).
 * Tallying edep x LET in keV/um (proportional to the density squared) rounded every 1 mm air deposit to 0. */
#define MCP_LET_SCALE 65536.0f

/* Columns of the per-(material, energy-bin) record of the energy table: X(NAME, index, "description").
 * Python name: the NAME in lower case (mcproton/_kernels/layout.py ENERGY_COLUMNS). */
#define MCP_ENERGY_COLUMNS(X) \
    X(RANGE, 0, "CSDA range, g/cm2") \
    X(STOP, 1, "electronic mass stopping power, MeV cm2/g") \
    X(SPR_W, 2, "(S/rho)_water / (S/rho)_material") \
    X(NUC_SIGMA, 3, "nonelastic mass cross section, cm2/g") \
    X(MULT_P, 4, "secondary protons per nonelastic event") \
    X(FRAC_RECOIL, 5, "fraction of the incident energy to recoils (local)") \
    X(MULT_ALPHA, 6, "alphas per event") \
    X(MULT_D, 7, "deuterons per event") \
    X(PP_SIGMA, 8, "elastic scattering on hydrogen (p-p), mass cross section, cm2/g") \
    X(EL_SIGMA, 9, "nuclear elastic scattering on nuclei heavier than H, mass cross section, cm2/g") \
    X(HARD_SIGMA, 10, "sum of NUC_SIGMA, PP_SIGMA and EL_SIGMA: all hard nuclear events (one lookup per step)") \
    X(RANGE_B, 11, "b = (1 + k) dlnE of the bin starting here, S_tot ~ E^-k inside it (range interpolation)") \
    X(HARD_SIGMA_MAX, 12, "majorant of HARD_SIGMA over the energies one step can reach (null-collision sampling)") \
    X(LET_END, 13, "track-end LET, MeV cm2/g: (1/E) x the integral of STOP from 0 to E, the dose-averaged LET of a " \
      "proton that deposits all its energy E in one place (the residual below the cut-off)")
#define MCP_N_ENERGY_COLUMNS 16 /* columns 14-15 spare (16-float records) */

/* Columns of the per-material property record: X(NAME, index, "description") (layout.py MATERIAL_COLUMNS). */
#define MCP_MATERIAL_COLUMNS(X) \
    X(XS, 0, "Gottschalk scattering length X_S, g/cm2") \
    X(Z_OVER_A, 1, "<Z/A>, mol/g") \
    X(RANGE_CUT, 2, "CSDA range at the cut-off energy, g/cm2") \
    X(EL_A, 3, "effective mass number of the nuclear elastic targets (0: none)")
#define MCP_N_MATERIAL_COLUMNS 4

/* Ledger entries: X(NAME, name, index, kind, "description"), name = NAME in lower case (the Python key, and
 * the field of transport.cu's per-thread HistoryLedger).  kind: energy_in (the energy that enters: the balance
 * compares it with the sum of the energy_out entries) or energy_out, both fixed point (MCP_TALLY_SCALE), or
 * count.  `deposited` is filled by the host from the dose tally (mcproton/run.py), never by the kernel.
 * Adding an entry: one line here and the kernel line that counts it (L.name += ...); the host reports it. */
#define MCP_LEDGER_ENTRIES(X) \
    X(INCIDENT, incident, 0, energy_in, "kinetic energy of the primaries leaving the source") \
    X(DEPOSITED, deposited, 1, energy_out, "energy deposited in the grid (sum of the dose tally)") \
    X(ESCAPED, escaped, 2, energy_out, "kinetic energy of protons leaving the grid") \
    X(MISSED, missed, 3, energy_out, "kinetic energy of primaries (and range-shifter secondaries) that never " \
      "reach the grid") \
    X(NEUTRAL, neutral, 4, energy_out, "nonelastic energy to neutrons, photons and binding (leaves the geometry)") \
    X(PRIMARIES, primaries, 5, count, "number of primaries") \
    X(NUCLEAR_EVENTS, nuclear_events, 6, count, "nonelastic events") \
    X(SECONDARIES, secondaries, 7, count, "secondary protons produced") \
    X(ERRORS, errors, 8, count, "tracks stopped for a numerical error: must be 0") \
    X(STACK_FULL, stack_full, 9, count, "secondaries dropped because the per-history stack was full") \
    X(STEPS, steps, 10, count, "transport steps") \
    X(PP_ELASTIC, pp_elastic, 11, count, "elastic scatterings on hydrogen in the grid") \
    X(NUCLEAR_ELASTIC, nuclear_elastic, 12, count, "nuclear elastic scatterings on nuclei heavier than hydrogen") \
    X(SHIFTER, shifter, 13, energy_out, "energy lost in range shifters: ionisation, nuclear recoils and fragments, " \
      "the primaries that end there and what the secondary protons made there lose in them") \
    X(SHIFTER_REMOVED, shifter_removed, 14, count, "primaries that end in a range shifter: stopped or nonelastic " \
      "event")
#define MCP_N_LEDGER 16 /* entries 15 spare */

/* Bits of Params::options.flags: X(NAME, bit value, "description") (layout.py FLAGS). */
#define MCP_FLAGS(X) \
    X(STRAGGLING, 1, "energy-loss straggling") \
    X(MSC, 2, "multiple Coulomb scattering") \
    X(NUCLEAR, 4, "nuclear interactions") \
    X(SHARED_TALLY, 8, "tallies are shared between threads: add atomically (always on the GPU; on the CPU with " \
      "several threads and one shared slot)")

/* Voxels per block of Params::tallies.touched: 32 (a pencil beam's batch on a 512 x 512 x 200 grid touches
 * ~2 % of the blocks with 32 voxels, 2.6 % with 64, and 1 % of the voxels carry dose). */
#define MCP_TOUCH_SHIFT 5
/* Counters per history of Params::tallies.history_steps (SIMT-efficiency proxy). */
#define MCP_HISTORY_STEP_SLOTS 8

/* The fields of struct Params, by role (the Celeritas *Data.hh split): one list per role, X(C type, name,
 * "description"), expanded into its own struct (TableParams, GridParams, ...), and MCP_PARAMS_ROLES, the
 * roles in the order struct Params holds them: X(struct type, member, field list, "description").  The
 * kernels read p.grid.nx; the Python side (mcproton/_kernels/layout.py) builds a nested NumPy dtype from the
 * same lists and addresses a field by its name alone (p["nx"]), so every field name is unique across the
 * roles.  C types: const T* / T* (pointers: uint64 addresses on the Python side), float, int32_t, int64_t,
 * uint64_t.  No implicit padding, not even at the end of a role's struct (checked below): order the fields by
 * size, and add an explicit pad field (pad_<role>) where alignment still needs one. */
#define MCP_PARAMS_TABLES(X) \
    X(const float*, energy_table, "[n_mat][n_e][N_ENERGY_COLUMNS] on the ln(E) grid") \
    X(const int32_t*, range_index, "[n_mat][n_r] for each ln(range) grid point, the last energy bin whose range " \
      "is <= it: the start of the inverse-range search") \
    X(const float*, material_props, "[n_mat][N_MATERIAL_COLUMNS]") \
    X(float, log_e_min, "ln(E/MeV) of energy bin 0") \
    X(float, inv_dlog_e, "1 / ln-energy bin width") \
    X(float, dlog_e, "ln-energy bin width (1 / inv_dlog_e)") \
    X(float, log_r_min, "ln(R/(g/cm2)) of range bin 0") \
    X(float, inv_dlog_r, "1 / ln-range bin width") \
    X(int32_t, n_e, "energy bins") \
    X(int32_t, n_r, "range bins") \
    X(int32_t, n_mat, "materials")
#define MCP_PARAMS_GRID(X) \
    X(const uint8_t*, material_index, "[nz][ny][nx]") \
    X(const float*, density, "[nz][ny][nx] g/cm3") \
    X(int32_t, nx, "voxels along x") \
    X(int32_t, ny, "voxels along y") \
    X(int32_t, nz, "voxels along z") \
    X(float, vx, "voxel size x, cm") \
    X(float, vy, "voxel size y, cm") \
    X(float, vz, "voxel size z, cm") \
    X(float, inv_vx, "1 / voxel size x, 1/cm") \
    X(float, inv_vy, "1 / voxel size y, 1/cm") \
    X(float, inv_vz, "1 / voxel size z, 1/cm") \
    X(int32_t, pad_grid, "padding (GridParams to a multiple of 8 bytes)")
#define MCP_PARAMS_SOURCE(X) \
    X(const Spot*, spots, "[n_spots]") \
    X(const uint64_t*, spot_cdf, "[n_spots] 2^63 x cumulative weight, last = 2^63 (source/sample.h)") \
    X(int32_t, n_spots, "spots") \
    X(int32_t, pad_source, "padding (SourceParams to a multiple of 8 bytes)")
#define MCP_PARAMS_TALLIES(X) \
    X(int64_t*, edep, "[nvox] energy deposited (all particles), fixed point") \
    X(int64_t*, edep_water, "[nvox] energy x (S/rho)_w/(S/rho)_m, fixed point") \
    X(int64_t*, edep_proton, "[nvox] energy deposited by protons (LET denominator), fixed point") \
    X(int64_t*, let_num, "[nvox] sum of proton energy x mass stopping power (MeV cm2/g), MCP_LET_SCALE fixed point") \
    X(int64_t*, ledger, "[N_LEDGER]") \
    X(uint8_t*, touched, "see below") \
    X(int64_t*, history_steps, "see below") \
    X(int64_t*, work_next, "GPU: the next history of the launch to hand out (persistent loop), zeroed by the " \
      "host before every launch; null: thread t takes histories t, t + T, ... (the CPU has its own counter)") \
    X(int64_t, tally_stride, "CPU: voxels per tally slot (0 = one shared, atomic tally)") \
    X(int32_t, n_slots, "CPU: tally slots; thread t writes slot t % n_slots (atomically when threads " \
      "share)") \
    X(int32_t, pad_tallies, "padding (TallyParams to a multiple of 8 bytes)")
#define MCP_PARAMS_OPTIONS(X) \
    X(uint64_t, seed, "random seed") \
    X(int32_t, flags, "MCP_FLAG_* bits") \
    X(float, e_cut, "cut-off energy, MeV") \
    X(float, max_eloss_fraction, "largest fractional energy loss per step") \
    X(float, max_step, "largest step, cm")
#define MCP_PARAMS_ROLES(X) \
    X(TableParams, tables, MCP_PARAMS_TABLES, "material tables: ln(E) and ln(R) grids, material records") \
    X(GridParams, grid, MCP_PARAMS_GRID, "the voxel grid: materials, densities, shape, voxel size") \
    X(SourceParams, source, MCP_PARAMS_SOURCE, "the beam: its spots and their sampling CDF") \
    X(TallyParams, tallies, MCP_PARAMS_TALLIES, "where the kernel scores: tallies, ledger, touched blocks") \
    X(OptionParams, options, MCP_PARAMS_OPTIONS, "physics switches, cut-off, step limits and the seed")
/* Params::tallies.touched: [ceil(nvox / 2^MCP_TOUCH_SHIFT)] or null: set to 1 for every block of
 * 2^MCP_TOUCH_SHIFT consecutive voxels (flat index) that a batch scores into, so that the host reads and
 * clears only those blocks of a large grid instead of the whole tallies (mcproton/run.py,
 * run_histories_sparse).  Params::tallies.history_steps: null in a run.  For the SIMT-efficiency proxy
 * (mcproton/_kernels/simt.py), on the CPU backend only (the GPU kernel is compiled without the counting):
 * [n_histories][MCP_HISTORY_STEP_SLOTS] zeroed counters, the steps of each track of each history of the
 * launch (index = history - first_history): slot 0 scratch, 1 the number of tracks, 2 the primary, 3.. the
 * secondaries in the order they ran on the history's thread (the last slot sums the rest). */

/* ---- expansions of the lists (nothing below is read by the Python side) ---- */

enum EnergyColumn {
#define MCP_X_ENUM(NAME, index, doc) COL_##NAME = index,
    MCP_ENERGY_COLUMNS(MCP_X_ENUM)
#undef MCP_X_ENUM
    N_ENERGY_COLUMNS = MCP_N_ENERGY_COLUMNS
};

enum MaterialColumn {
#define MCP_X_ENUM(NAME, index, doc) MAT_##NAME = index,
    MCP_MATERIAL_COLUMNS(MCP_X_ENUM)
#undef MCP_X_ENUM
    N_MATERIAL_COLUMNS = MCP_N_MATERIAL_COLUMNS
};

enum LedgerEntry {
#define MCP_X_ENUM(NAME, name, index, kind, doc) LEDGER_##NAME = index,
    MCP_LEDGER_ENTRIES(MCP_X_ENUM)
#undef MCP_X_ENUM
    N_LEDGER = MCP_N_LEDGER
};

enum ParamsFlag {
#define MCP_X_ENUM(NAME, bit, doc) MCP_FLAG_##NAME = bit,
    MCP_FLAGS(MCP_X_ENUM)
#undef MCP_X_ENUM
};

/* struct TableParams {...}; ... one struct per role, then struct Params { TableParams tables; ... }. */
#define MCP_X_FIELD(type, name, doc) type name;
#define MCP_X_ROLE_STRUCT(Type, member, FIELDS, doc) struct Type { FIELDS(MCP_X_FIELD) };
MCP_PARAMS_ROLES(MCP_X_ROLE_STRUCT)
#undef MCP_X_ROLE_STRUCT
#undef MCP_X_FIELD

struct Params {
#define MCP_X_ROLE_MEMBER(Type, member, FIELDS, doc) Type member;
    MCP_PARAMS_ROLES(MCP_X_ROLE_MEMBER)
#undef MCP_X_ROLE_MEMBER
};

/* Compile-time checks of the lists: every index inside its record, and no implicit padding anywhere in Params
 * (each role's struct is the sum of its fields, Params the sum of its roles), so that every offset is the sum
 * of the sizes before it, as in the NumPy mirror (built field by field with the natural alignment); the
 * layout probe (probes.cu mcp_probe_layout) then compares every offset with the mirror's at run time. */
#define MCP_X_CHECK(NAME, index, doc) \
    static_assert(index < N_ENERGY_COLUMNS, "energy column " #NAME " outside the record");
MCP_ENERGY_COLUMNS(MCP_X_CHECK)
#undef MCP_X_CHECK
#define MCP_X_CHECK(NAME, index, doc) \
    static_assert(index < N_MATERIAL_COLUMNS, "material column " #NAME " outside the record");
MCP_MATERIAL_COLUMNS(MCP_X_CHECK)
#undef MCP_X_CHECK
#define MCP_X_CHECK(NAME, name, index, kind, doc) \
    static_assert(index < N_LEDGER, "ledger entry " #NAME " outside the ledger");
MCP_LEDGER_ENTRIES(MCP_X_CHECK)
#undef MCP_X_CHECK
#define MCP_X_SIZE(type, name, doc) + sizeof(type)
#define MCP_X_CHECK(Type, member, FIELDS, doc) \
    static_assert(sizeof(Type) == 0 FIELDS(MCP_X_SIZE), \
                  "struct " #Type " has implicit padding: reorder its fields or add an explicit pad field");
MCP_PARAMS_ROLES(MCP_X_CHECK)
#undef MCP_X_CHECK
#undef MCP_X_SIZE
#define MCP_X_SIZE(Type, member, FIELDS, doc) + sizeof(Type)
static_assert(sizeof(Params) == 0 MCP_PARAMS_ROLES(MCP_X_SIZE),
              "struct Params has padding between its roles: give every role's struct a multiple of 8 bytes");
#undef MCP_X_SIZE
