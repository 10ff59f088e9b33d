"""Run ``mcproton run`` on each bad input and write docs/bad_inputs.md: the case, the command-line change and
the exact message.  Every case must fail before any transport starts, with exit status 2 and one message.

    python tests/run/make_bad_input_table.py            # rewrite docs/bad_inputs.md
    python tests/run/make_bad_input_table.py --check    # exit 1 if docs/bad_inputs.md is out of date

The cases are also run in-process by tests/run/test_run_bad_inputs.py.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "bad_inputs.md"

BASE = """\
[run]
primaries = 1000
seed = 1
backend = "cpu"
threads = 1

[phantom]
type = "water"
size_mm = [40.0, 40.0, 100.0]
voxel_mm = [4.0, 4.0, 2.0]

[beam]
energy_mev = 100.0
position_mm = [0.0, 0.0, -10.0]
direction = [0.0, 0.0, 1.0]
sigma_mm = [3.0, 3.0]

[output]
plot = false
"""

_RUN = BASE.split("[phantom]")[0]
SLABS = BASE.replace('type = "water"\nsize_mm = [40.0, 40.0, 100.0]',
                     'type = "slabs"\nlateral_size_mm = [40.0, 40.0]\n'
                     'layers = [{material = "water", thickness_mm = 100.0}]')
CT = _RUN + '[phantom]\ntype = "ct"\nct_dir = "ct"\n@EXTRA\n\n[beam]' + BASE.split("[beam]")[1]
SLAB_CT = (_RUN + '[phantom]\ntype = "slab_ct"\nlateral_size_mm = [40.0, 40.0]\nvoxel_mm = [4.0, 4.0, 2.0]\n'
           'layers = [{material = "water", thickness_mm = 100.0}]\n@EXTRA\n\n[beam]' + BASE.split("[beam]")[1])
PLAN = BASE.split("[beam]")[0] + '[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v5"\n'
#: a plan on the small CT (its frame of reference and patient position are the CT's own)
CT_PLAN = _RUN + '[phantom]\ntype = "ct"\nct_dir = "ct"\n\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v5"\n'

# (case, extra command-line arguments, config text or None for BASE, text the message must contain);
# in the arguments @cfg, @out and @tmp stand for the config, the default output and the case's folder; a config
# naming ct_dir = "ct" gets a small CT series there, one naming RP.dcm a copy of tests/data/dicom/RP_plan05.dcm
# (the names of PLAN_VARIANTS: a real plan changed so), one naming a file of MODEL_VARIANTS dcpt_v5 changed so
# (tuned/dcpt_v5_tune6.toml declaring spot tune 6.0)
CASES: list[tuple[str, list[str], str | None, str]] = [
    ("unknown key (typo)", ["--set", "run.primary=1000"], None, "run.primary"),
    ("unknown section", ["--set", "beem.energy_mev=100"], None, "[beem]"),
    ("wrong type (string for a number)", ["--set", 'run.primaries="many"'], None, "run.primaries"),
    ("true/false for a number", ["--set", "beam.energy_mev=true"], None, "beam.energy_mev"),
    ("a number in quotes", ["--set", 'run.primaries="1000"'], None, "without quotes"),
    ("1e6 for a whole number (TOML reads it as a decimal number)", ["--set", "run.primaries=1e6"], None,
     "write 1000000"),
    ("true/false in quotes", ["--set", 'physics.nuclear="yes"'], None, "true or false"),
    ("zero primaries", ["--set", "run.primaries=0"], None, "run.primaries"),
    ("target uncertainty no run reaches (1e-300 ended in an OverflowError)", ["--set", "run.target_uncertainty=1e-300"],
     None, "run.target_uncertainty"),
    ("negative primaries", ["--set", "run.primaries=-5"], None, "run.primaries"),
    ("energy above the tables", ["--set", "beam.energy_mev=400"], None, "energy"),
    ("negative energy", ["--set", "beam.energy_mev=-5"], None, "energy_mev"),
    ("energy below the cut-off", ["--set", "beam.energy_mev=0.2"], None, "beam.energy_mev"),
    ("energy spread reaching the tables' limit", ["--set", "beam.energy_mev=345",
                                                  "--set", "beam.energy_spread_mev=12"], None, "energy"),
    ("NaN energy", ["--set", "beam.energy_mev=nan"], None, "beam.energy_mev"),
    ("infinite size", ["--set", "phantom.size_mm=[40.0, inf, 100.0]"], None, "phantom.size_mm"),
    ("negative size", ["--set", "phantom.size_mm=[-40.0, 40.0, 100.0]"], None, "phantom.size_mm"),
    ("zero voxel size", ["--set", "phantom.voxel_mm=0"], None, "phantom.voxel_mm"),
    ("voxel larger than the phantom", ["--set", "phantom.voxel_mm=[80.0, 4.0, 2.0]"], None, "phantom.voxel_mm"),
    ("size not a whole number of voxels (10 mm of 4 mm voxels was an 8 mm box)",
     ["--set", "phantom.size_mm=[40.0, 40.0, 10.0]", "--set", "phantom.voxel_mm=4.0"], None, "whole number"),
    ("negative energy spread", ["--set", "beam.energy_spread_mev=-1"], None, "energy_spread_mev"),
    ("negative spot size", ["--set", "beam.sigma_mm=[-3.0, 3.0]"], None, "sigma_mm"),
    ("zero direction", ["--set", "beam.direction=[0.0, 0.0, 0.0]"], None, "direction"),
    ("energy spread above a fifth of the energy (sampled energies below 0 MeV were clamped to 0)",
     ["--set", "beam.energy_spread_mev=30"], None, "energy_spread_mev = 30"),
    ("source inside the phantom (the 30 mm of water upstream of it got no dose, the Bragg peak lay 30 mm too deep)",
     ["--set", "beam.position_mm=[0.0, 0.0, 30.0]"], None, "inside the phantom"),
    ("correlation outside [-1, 1]", ["--set", "beam.correlation=[2.0, 0.0]"], None, "correlation"),
    ("zero total protons", ["--set", "beam.total_protons=0"], None, "total_protons"),
    ("beam misses the phantom", ["--set", "beam.position_mm=[500.0, 0.0, -10.0]"], None, "misses"),
    ("beam points away from the phantom", ["--set", "beam.direction=[0.0, 0.0, -1.0]"], None, "misses"),
    ("one batch", ["--set", "run.batches=1"], None, "run.batches"),
    ("negative seed", ["--set", "run.seed=-1"], None, "run.seed"),
    ("unknown backend", ["--set", 'run.backend="gpu"'], None, "run.backend"),
    ("negative threads", ["--set", "run.threads=-2"], None, "run.threads"),
    ("negative GPU index", ["--set", "run.gpu=-1"], None, "run.gpu"),
    ("zero batch size", ["--set", "run.batch_size=0"], None, "run.batch_size"),
    ("target uncertainty above 1", ["--set", "run.target_uncertainty=1.5"], None, "run.target_uncertainty"),
    ("target uncertainty meant as a percent (0.5 for 0.5 % stopped the run at 3 %, a tenth of its primaries)",
     ["--set", "run.target_uncertainty=0.5"], None, "give 0.005 for 0.5 %"),
    ("negative time limit", ["--set", "run.time_limit_s=-1"], None, "run.time_limit_s"),
    ("negative checkpoint interval", ["--set", "run.checkpoint_interval_s=-5"], None, "run.checkpoint_interval_s"),
    ("unknown water model", ["--set", 'physics.water_model="icru49"'], None, "physics.water_model"),
    ("cut-off energy out of range", ["--set", "physics.e_cut_mev=50"], None, "physics.e_cut_mev"),
    ("unknown phantom type", ["--set", 'phantom.type="watr"'], None, "phantom.type"),
    ("unknown material", ["--set", 'phantom.material="watter"'], None, "watter"),
    ("CT phantom without ct_dir", [], CT.replace('ct_dir = "ct"\n@EXTRA', ""), "phantom.ct_dir"),
    ("misspelt output.dose_to", ["--set", 'output.dose_to="Water"'], None, "output.dose_to"),
    ("implausible constant RBE", ["--set", "output.rbe=11"], None, "output.rbe"),
    ("dose grid on a water phantom", ["--set", "phantom.dose_voxel_mm=2.0"], None, "phantom.dose_voxel_mm"),
    ("CT series (phantom.ct_series) not in the CT folder", [], CT.replace("@EXTRA", 'ct_series = "1.2.3.4"'),
     "phantom.ct_series"),
    ("CT folder that does not exist", [],
     CT.replace('ct_dir = "ct"', 'ct_dir = "no/such/dir"').replace("@EXTRA", ""), "no/such/dir"),
    ("slab with negative thickness", [], SLABS.replace("thickness_mm = 100.0", "thickness_mm = -20"), "thickness"),
    ("no [beam] or [plan]", [], BASE.split("[beam]")[0] + "[output]\nplot = false\n", "[beam]"),
    ("malformed --set", ["--set", "run.primaries"], None, "--set"),
    ("config file not found", ["@missing"], None, "not found"),
    ("invalid TOML", [], "[run\nprimaries = 10\n", "TOML"),
    ('a Windows path in a TOML "..." string, its \\t, \\n and \\r taken as escapes (before 2026-12-07: taken without a '
     "word, and an RT Dose was written to a file whose name held a tab, a line break and a CR; portability audit 27, "
     "F6)", [], BASE.replace("[output]\n", '[output]\nrtdose = "C:\\temp\\new\\rd.dcm"\n'),
     "single quotes"),
    ('a Windows path with \\U in a TOML "..." string (before 2026-12-07: only "Invalid hex value")', [],
     BASE.replace("[output]\n", '[output]\nrtdose = "C:\\Users\\phys\\RD.dcm"\n'),
     "single quotes"),
    ("zero workers", ["--workers", "0"], None, "--workers"),
    ("--resume with --no-checkpoint (before: --resume was ignored without a word, the run started from history 0 "
     "and left the old checkpoint)", ["--resume"], None, "--no-checkpoint"),
    # issues 12 and 14: output contents, body outline, I-value set
    ("unknown I-value set", ["--set", 'physics.ivalue_set="bar"'], None, "physics.ivalue_set"),
    ("unknown dose summation", ["--set", 'output.dose_summation="total"'], None, "output.dose_summation"),
    ("body outline given as a number", ["--set", "output.body_outline=5"], None, "output.body_outline"),
    ("per-beam RT Doses without an RT Dose path", ["--set", "output.rtdose_per_beam=true"], None,
     "output.rtdose_per_beam"),
    ("a constant RBE, dose to water or one fraction for an RT Dose without an RT Dose path (before 2026-12-07: "
     "taken, the outputs bitwise the default ones, without a word)",
     ["--set", "output.rbe=1.1", "--set", 'output.dose_to="water"', "--set", 'output.dose_summation="fraction"'],
     None, "output.rbe"),
    # issue 17: keys that do not apply, values that can only be nonsense, type errors named by key
    ("a key of another phantom type (density of a slab phantom)", [],
     SLABS.replace("lateral_size_mm", "density_g_cm3 = 1.2\nlateral_size_mm"), "phantom.density_g_cm3"),
    ("slab material given as a number", [], SLABS.replace('material = "water"', "material = 5"),
     "phantom.layers[0].material"),
    # audit 27 (error messages) F5: "must be a table with material and thickness_mm" (it was one), "unknown keys
    # ['density']" without the keys of a layer
    ("slab layer key misspelt (thickness for thickness_mm)", [], SLABS.replace("thickness_mm = 100.0",
                                                                               "thickness = 100.0"),
     "unknown key 'thickness' (did you mean 'thickness_mm'?)"),
    ("slab layer key misspelt (density for density_g_cm3)", [], SLABS.replace("thickness_mm = 100.0",
                                                                             "thickness_mm = 100.0, density = 1.05"),
     "unknown key 'density' (did you mean 'density_g_cm3'?)"),
    ("slab layer without its thickness", [], SLABS.replace(", thickness_mm = 100.0", ""), "lacks thickness_mm"),
    ("spots given as numbers, not tables", ["--set", "beam.spots=[1, 2]"], None, "beam.spots[0]"),
    ("spot weight given as text", ["--set", 'beam.spots=[{weight = "heavy"}]'], None, "beam.spots[0].weight"),
    ("spot sigma larger than the grid (10^6 mm)", ["--set", "beam.sigma_mm=[1e6, 1e6]"], None, "sigma_mm"),
    ("divergence of 10^6 rad (found by the config fuzz)", ["--set", "beam.divergence_rad=[0.0, 1e6]"], None,
     "divergence_rad"),
    ("source 10^40 mm away", ["--set", "beam.position_mm=[0.0, 0.0, -1e40]"], None, "position_mm"),
    ("paediatric phantom with anisotropic voxels", [],
     BASE.split("[phantom]")[0] + '[phantom]\ntype = "paediatric"\nvoxel_mm = [2.0, 2.0, 3.0]\n\n[beam]'
     + BASE.split("[beam]")[1], "isotropic"),
    ("CT dose block larger than the CT (1000 mm)", [], CT.replace("@EXTRA", "dose_voxel_mm = 1000.0"),
     "phantom.dose_voxel_mm"),
    ("slab_ct with 10^7 mm of air", [], SLAB_CT.replace("@EXTRA", "air_mm = 1e7"), "air_mm"),
    ("slab_ct ct_dir pointing at an existing CT folder", [], SLAB_CT.replace("@EXTRA", 'ct_dir = "ct"'),
     "not empty"),
    ("missing plan.rtstruct (reported before the transport)", [], PLAN + 'rtstruct = "no_such_RS.dcm"\n',
     "plan.rtstruct"),
    # a contour point 5 m away (a damaged or mistyped coordinate: the ROI's polygon spikes to the grid's edge), refused
    # on the patient's CT and, since 2026-12-07 (audit 28), on the slab phantom's CT too (before: run without a word)
    ("RT Struct with a contour point 5 m outside the CT", [],
     CT.replace("@EXTRA", "").replace("[output]", '[plan]\nrtstruct = "RS_far.dcm"\n\n[output]'), "outside the CT"),
    ("RT Struct with a contour point 5 m outside the slab phantom's CT", [],
     SLAB_CT.replace("@EXTRA", "").replace("[output]", '[plan]\nrtstruct = "RS_far.dcm"\n\n[output]'),
     "outside the CT"),
    # audit 24 (identity F1, F8): before 2026-12-07 both ran without a word, the RT Dose named the CT's (first
    # slice's) patient
    ("RT Ion Plan of another patient (PatientID) than the CT", [], CT_PLAN, "plan.allow_other_patient"),
    ("CT series with a slice of another patient (PatientID)", [],
     CT.replace('ct_dir = "ct"', 'ct_dir = "ct_mixed"').replace("@EXTRA", ""), "name different patients"),
    ("beam model file that does not exist (a relative path: from the config file's folder)", [],
     PLAN.replace('"dcpt_v5"', '"models/my_machine.toml"'), "looked for the file"),
    # audit 27 (error messages) F6 and F11c: a bare name was "neither a built-in model (...) nor a file", not a config
    # error, with neither the key nor where it looked; [plan] without beam_model "needs rtplan ... and beam_model"
    ("beam model name misspelt (dcpt_v6)", [], PLAN.replace('"dcpt_v5"', '"dcpt_v6"'),
     "plan.beam_model = 'dcpt_v6': no built-in model of that name (did you mean 'dcpt_v5'?)"),
    ("[plan] without beam_model", [], PLAN.replace('beam_model = "dcpt_v5"\n', ""), "[plan] has no beam_model"),
    ("HU calibration folder that does not exist", [], CT.replace("@EXTRA", 'calibration = "my_scanner"'),
     "looked for the folder"),
    ("HU calibration empty (before 2026-12-07 the config file's folder: a calibration found there was taken, where the "
     "default was meant)", [], CT.replace("@EXTRA", 'calibration = ""'), "phantom.calibration = '': an empty path"),
    ("beam model empty (before 2026-12-07: \". is a folder\", naming neither the key nor the value)", [],
     PLAN.replace('"dcpt_v5"', '""'), "plan.beam_model = '': an empty path"),
    # a folder with the TPS's HU -> SPR table (hu_spr.csv + hu_materials.csv, made by case_argv from HLUT_FOLDERS)
    ("HU -> SPR folder holding hu_density.csv too (ambiguous)", [], CT.replace("@EXTRA", 'calibration = "hlut_both"'),
     "both hu_spr.csv and hu_density.csv"),
    ("HU -> SPR table in per mille (SPR 1000 at 0 HU)", [],
     CT.replace("@EXTRA", 'calibration = "hlut_absurd"'), "not a stopping-power ratio"),
    ("HU -> SPR table with a metal's rows (an extended-HU planning system's table to titanium, SPR 3.23 at 8000 HU)",
     [], CT.replace("@EXTRA", 'calibration = "hlut_metal"'), "a metal's stopping-power ratio"),
    ("HU -> SPR table with HU out of order", [], CT.replace("@EXTRA", 'calibration = "hlut_order"'),
     "increase strictly"),
    ("HU -> SPR table saved as hu_density.csv", [], CT.replace("@EXTRA", 'calibration = "hlut_as_density"'),
     "hu_spr.csv"),
    ("HU -> SPR table saved as hu_density.csv without a header line (before 2026-12-07: read as mass densities "
     "without a word, bone's SPR 10 % low; ctcal audit F3)", [],
     CT.replace("@EXTRA", 'calibration = "hlut_noheader"'), "has no header line above it"),
    ("HU -> density table in CT numbers (HU + 1024: air 24, water 1024; before 2026-12-07: loaded, brain given lung's "
     "density and the energy-ledger refusal blamed the beam; ctcal audit F4)", [],
     CT.replace("@EXTRA", 'calibration = "cal_ctnum"'), "looks like CT numbers"),
    ("HU calibration stating a tube voltage that is none ('# kVp: 0.12', in kV as a fraction; the kvp audit of "
     "2026-12-08 added the line, which a run compares with the CT's KVP)", [],
     CT.replace("@EXTRA", 'calibration = "cal_kvp_typo"'), "is not one in 40-160 kVp"),
    ("HU -> material table in CT numbers beside a density table in HU (air's bin from -26, HU + 1024; before "
     "2026-12-07: loaded, 0 HU and soft tissue given air's composition, ranges ~11 % long; re-read audit F1)", [],
     CT.replace("@EXTRA", 'calibration = "cal_matctnum"'), "the material table gives 0 HU"),
    # audit 27 (error messages) F4: "[phantom]: ... must hold A and B, or C (or D) and E", neither the key nor the
    # file missing; the CSV itself given for its folder: "call HUCalibration.from_files(...)"
    ("HU calibration folder without its material table", [], CT.replace("@EXTRA", 'calibration = "cal_nomat"'),
     "the folder holds hu_density.csv but no hu_materials.csv"),
    ("HU calibration given as its density table, not its folder", [],
     CT.replace("@EXTRA", 'calibration = "cal_nomat/hu_density.csv"'), "is a file, not a calibration folder"),
    ("plan.beams naming a beam the plan does not have", ["--set", "plan.beams=[1, 4]"], PLAN, "not in the plan"),
    ("plan.beams naming a beam twice", ["--set", "plan.beams=[1, 1]"], PLAN, "named twice"),
    ("plan for another treatment machine than the beam model's (GTR4, dcpt_v5 is of TR1-TR3)", [],
     PLAN.replace('"RP.dcm"', '"RP_GTR4.dcm"'), "plan.machine_check"),
    ("plan without FrameOfReferenceUID (0020,0052; optional in the RT Ion Plan, stripped by some anonymisers) on a "
     "CT, nothing linking the two (before 2026-12-07: computed on any CT without a word)", [],
     CT_PLAN.replace('"RP.dcm"', '"RP_NOFRAME.dcm"'), "gives no FrameOfReferenceUID"),
    # real plans changed as real plans differ (PLAN_VARIANTS), since 2026-12-05: before, each ran without a word
    ("an MLC closing the field to a 1 cm slit (IonBeamLimitingDeviceSequence MLCX, BeamLimitingDevicePositionSequence "
     "in control point 0)", [], PLAN.replace('"RP.dcm"', '"RP_MLC.dcm"'), "plan.ignore_beam_limiting_devices"),
    ("a scatterer (LateralSpreadingDeviceType SCATTERER instead of MAGNET)", [],
     PLAN.replace('"RP.dcm"', '"RP_SCATTERER.dcm"'), "SCATTERER"),
    ("RangeShifterSetting RETRACTED (RayStation plan06, RS_3CM; before: read as IN)", [],
     PLAN.replace('"RP.dcm"', '"RP_RS_RETRACTED.dcm"'), "neither IN nor OUT"),
    ("plan energy outside the beam model (a layer at 250 MeV; before: the message named neither beam nor control "
     "point)", [], PLAN.replace('"RP.dcm"', '"RP_E250.dcm"'), "control point 4"),
    ("plan layer of a spot tune the beam model does not declare (spot_tune_ids = [\"6.0\"], the plan's is 4.0)", [],
     PLAN.replace('"dcpt_v5"', '"tuned/dcpt_v5_tune6.toml"'),
     "is not a spot tune"),
    ("beam model energy spread above a fifth of the energy (energy_spread = 25 percent_of_nominal; before 2026-12-06 "
     "the plan ran, its sampled energies below 0 MeV clamped to 0)", [],
     PLAN.replace('"dcpt_v5"', '"wide/dcpt_v5_spread25.toml"'), "more than a fifth of it"),
    ("plan whose spots all miss the phantom (IsocenterPosition z = 2000 mm; before: told to check beam.position_mm, "
     "a key of [beam])", [], PLAN.replace('"RP.dcm"', '"RP_far.dcm"'), "IsocenterPosition"),
    ("PatientSupportAngle missing from every control point (a stripped tag), since 2026-12-06 (before: run at couch 0 "
     "without a word, a couch-kicked beam from another direction)", [], PLAN.replace('"RP.dcm"', '"RP_NOCOUCH.dcm"'),
     "PatientSupportAngle (300A,0122) is missing from the first control point"),
    ("IsocenterPosition missing from control point 0 and given, 20 mm to the right, in control point 2, since "
     "2026-12-06 (before: run with the moved isocentre without a word)", [],
     PLAN.replace('"RP.dcm"', '"RP_ISO_CP2.dcm"'),
     "IsocenterPosition (300A,012C) is given here but missing from the first control point"),
    # issue 17: nothing is ever destroyed
    ("--out equal to the config file", ["--out", "@cfg"], None, "config file"),
    ("--out equal to the RT Ion Plan", ["--out", "@tmp/RP.dcm"], PLAN, "plan.rtplan"),
    ("--out x.png (the plot written beside it would replace it)", ["--set", "output.plot=true", "--out", "@tmp/x.png"],
     None, "the plot"),
    ("--rtdose equal to --out", ["--rtdose", "@out"], None, "--rtdose"),
    ("--rtdose inside --out (--out given a folder's name: the HDF5 takes it, the RT Dose could not be written after "
     "the transport)", ["--out", "@tmp/res", "--rtdose", "@tmp/res/RD.dcm"], None, "lies inside --out"),
    ("--rtdose of a beam without total_protons (its dose is per primary, an RT Dose holds Gy)",
     ["--rtdose", "@tmp/rd.dcm"], None, "total_protons"),
    ("--rtdose naming a planning system's RT Dose (mcproton replaces only its own earlier outputs; before "
     "2026-12-06 it was replaced)", ["--rtdose", "@tmp/RD_TPS.dcm"], None, "mcproton did not write it"),
    ("--out a device node", ["--out", "/dev/null"], None, "regular file"),
    ("--out a folder", ["--out", "@tmp"], None, "folder"),
    # issue 17: no hang on a wrong endpoint
    ("--scheduler at a closed port", ["--scheduler", "tcp://127.0.0.1:1"], None, "Dask scheduler"),
    ("CT whose 12-bit header (BitsStored 12) does not fit its words: metal at 8000 HU stored as 9024 (HU + 1024, "
     "unsigned; before 2026-12-06: read as -192 HU, fat, without a word; pydicom keeps the low 12 bits)", [],
     CT.replace('ct_dir = "ct"', 'ct_dir = "ct_b12"').replace("@EXTRA", ""), "BitsStored 16"),
    ("ct_dir naming the patient folder, whose CT series lies in its sub-folder ct/ (journey audit 28, F6: before, "
     "the sub-folder was not named)", [],
     CT.replace('ct_dir = "ct"', 'ct_dir = "patient"').replace("@EXTRA", ""), "holds 4 CT slices: give that folder"),
]

# Cases refused after the transport (the finished run is checked): exit status 2, one message, no output.
RUN_CASES: list[tuple[str, list[str], str | None, str]] = [
    ("beam mostly misses the phantom (sigma 100 mm on a 40 mm box)", ["--set", "beam.sigma_mm=[100.0, 100.0]"], None,
     "missed the grid"),
    ("beam shoots through a thin phantom (10 mm of water at 100 MeV)", ["--set", "phantom.size_mm=[40.0, 40.0, 10.0]"],
     None, "left the grid"),
]


def _small_ct(folder: Path) -> None:
    """A 8 x 8 x 4 CT series of water (0 HU), 2 mm voxels, in ``folder`` (a fixed SeriesInstanceUID and
    FrameOfReferenceUID: messages that list the series or name the frame stay the same from run to run)."""
    import numpy as np

    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series

    if not folder.exists():
        write_ct_series(np.zeros((4, 8, 8), np.int16), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), folder,
                        series_instance_uid="1.2.826.0.1.3680043.8.498.4711",
                        study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.4712"))


def _far_rtstruct(path: Path) -> None:
    """An RT Struct of a 'Body' and a 'target' circle at z = 2 mm whose sixth point lies at x = 5000 mm."""
    sys.path.insert(0, str(ROOT / "tests" / "io"))
    from dicom_factories import circle_contour, make_rtstruct, save   # tests/io/dicom_factories.py

    far = circle_contour(0.0, 0.0, 5.0, 2.0, n=24)
    far[5, 0] = 5000.0
    save(make_rtstruct({"Body": [circle_contour(0.0, 0.0, 7.0, 2.0, n=24)], "target": [far]}), path)


def _ct_of_two_patients(folder: Path) -> None:
    """:func:`_small_ct` whose third slice names another patient (PatientID OTHER-9)."""
    import pydicom

    if folder.exists():
        return
    _small_ct(folder)
    path = sorted(folder.glob("*.dcm"))[2]
    ds = pydicom.dcmread(path)
    ds.PatientID, ds.PatientName = "OTHER-9", "Other^Patient"
    ds.save_as(path)


def _ct_12_bit_header(folder: Path) -> None:
    """:func:`_small_ct` with a titanium plate at 8000 HU in two slices, stored unsigned as HU + 1024 (intercept
    -1024) under a 12-bit header (BitsStored 12, HighBit 11), as an extended-HU export that kept the 12-bit header
    writes it."""
    import numpy as np
    import pydicom

    if folder.exists():
        return
    _small_ct(folder)
    for k, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        stored = np.full((8, 8), 1024, np.uint16)
        if k in (1, 2):
            stored[2:6, 2:6] = 8000 + 1024
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit, ds.RescaleIntercept = 0, 12, 11, -1024
        ds.PixelData = stored.astype("<u2").tobytes()
        ds.save_as(path)


#: calibration folders of the HU -> SPR cases: name -> {file: text}; each beside a one-material hu_materials.csv
#: (none where its text is None)
HLUT_FOLDERS: dict[str, dict[str, str | None]] = {
    "hlut_both": {"hu_spr.csv": "HU,SPR\n-1000,0.001\n0,1.0\n1500,1.8\n",
                  "hu_density.csv": "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.9\n"},
    "hlut_absurd": {"hu_spr.csv": "HU,SPR\n-1000,1\n0,1000\n1000,1600\n"},
    "hlut_metal": {"hu_spr.csv": "HU,SPR\n-1000,0.001\n0,1.0\n3000,2.47\n8000,3.23\n"},
    "hlut_order": {"hu_spr.csv": "HU,SPR\n-1000,0.001\n1000,1.5\n0,1.0\n"},
    "hlut_as_density": {"hu_density.csv": "HU,SPR\n-1000,0.001\n0,1.0\n1500,1.8\n"},
    "hlut_noheader": {"hu_density.csv": "-1000,0.001\n0,1.0\n1500,1.8\n"},
    "cal_ctnum": {"hu_density.csv": "HU,density_gcm3\n24,0.0012\n1024,1.0\n2524,1.9\n"},
    "cal_matctnum": {"hu_density.csv": "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.9\n",
                     "hu_materials.csv": "hu_lo,name,w_H,w_C,w_N,w_O,w_Ar\n-26,air,0,0.000124,0.755268,0.231781,"
                                         "0.012827\n904,soft_tissue,0.102,0.143,0.034,0.708,0.013\n"},
    "cal_nomat": {"hu_density.csv": "HU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.9\n", "hu_materials.csv": None},
    "cal_kvp_typo": {"hu_density.csv": "# kVp: 0.12\nHU,density_gcm3\n-1000,0.0012\n0,1.0\n1500,1.9\n"},
}


def _mlc_slit(ds) -> None:
    from pydicom.dataset import Dataset

    d, p = Dataset(), Dataset()
    d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs, d.LeafPositionBoundaries = "MLCX", 2, [-20, 0, 20]
    p.RTBeamLimitingDeviceType, p.LeafJawPositions = "MLCX", [-5, -5, 5, 5]
    ds.IonBeamSequence[0].IonBeamLimitingDeviceSequence = [d]
    ds.IonBeamSequence[0].IonControlPointSequence[0].BeamLimitingDevicePositionSequence = [p]


def _scatterer(ds) -> None:
    for d in ds.IonBeamSequence[0].LateralSpreadingDeviceSequence:
        d.LateralSpreadingDeviceType = "SCATTERER"


def _retracted(ds) -> None:
    ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0].RangeShifterSetting = "RETRACTED"


def _machine_gtr4(ds) -> None:   # the same plan, for another clinic's machine
    for b in ds.IonBeamSequence:
        b.TreatmentMachineName = "GTR4"


def _no_frame(ds) -> None:   # the plan's Frame of Reference module left out (U in the RT Ion Plan IOD)
    from mcproton._io.dicom_common import PHANTOM_STUDY

    del ds.FrameOfReferenceUID
    # of the small CT's patient, so that the refusal shown is the frame's, not the patient rule's (checked first)
    ds.PatientID, ds.PatientName = PHANTOM_STUDY.patient_id, PHANTOM_STUDY.patient_name


def _energy_250(ds) -> None:
    cps = ds.IonBeamSequence[0].IonControlPointSequence
    cps[4].NominalBeamEnergy = cps[5].NominalBeamEnergy = 250.0


def _isocentre_far(ds) -> None:
    ds.IonBeamSequence[0].IonControlPointSequence[0].IsocenterPosition = [0.0, -25.0, 2000.0]


def _isocentre_only_in_a_later_control_point(ds) -> None:
    cps = ds.IonBeamSequence[0].IonControlPointSequence
    x, y, z = (float(v) for v in cps[0].IsocenterPosition)
    del cps[0].IsocenterPosition
    cps[2].IsocenterPosition = [x + 20.0, y, z]


def _no_couch_angle(ds) -> None:
    for b in ds.IonBeamSequence:
        for cp in b.IonControlPointSequence:
            if "PatientSupportAngle" in cp:
                del cp.PatientSupportAngle


#: plan file named in a case's config -> (the real plan of tests/data/dicom it is made from, the change)
PLAN_VARIANTS = {"RP_GTR4.dcm": ("RP_plan05.dcm", _machine_gtr4), "RP_E250.dcm": ("RP_plan05.dcm", _energy_250),
                 "RP_far.dcm": ("RP_plan05.dcm", _isocentre_far), "RP_MLC.dcm": ("RP_plan05.dcm", _mlc_slit),
                 "RP_SCATTERER.dcm": ("RP_plan05.dcm", _scatterer),
                 "RP_NOCOUCH.dcm": ("RP_plan05.dcm", _no_couch_angle),
                 "RP_ISO_CP2.dcm": ("RP_plan05.dcm", _isocentre_only_in_a_later_control_point),
                 "RP_RS_RETRACTED.dcm": ("RP_plan06_rs.dcm", _retracted),
                 "RP_NOFRAME.dcm": ("RP_plan05.dcm", _no_frame)}


#: beam model file named in a case's config -> the change of dcpt_v5's TOML that makes it (the table beside it)
MODEL_VARIANTS = {
    # declaring another spot tune than the plan's
    "tuned/dcpt_v5_tune6.toml": lambda t: t.replace('machines = ["TR1", "TR2", "TR3"]',
                                                    'machines = ["TR1", "TR2", "TR3"]\nspot_tune_ids = ["6.0"]'),
    # an energy spread of 25 % of the energy
    "wide/dcpt_v5_spread25.toml": lambda t: t.replace('energy_spread = "E_real_sigma_MeV"', "energy_spread = 25.0")
    .replace('energy_spread_unit = "MeV"', 'energy_spread_unit = "percent_of_nominal"')}


def case_argv(args: list[str], text: str | None, tmp: Path, i: int) -> list[str]:
    import shutil

    cfg = tmp / f"case{i:02d}.toml"
    text = BASE if text is None else text
    cfg.write_text(text)
    if 'ct_dir = "ct"' in text:
        _small_ct(tmp / "ct")
    if 'ct_dir = "patient"' in text:   # a patient folder, its CT series in the sub-folder ct/
        _small_ct(tmp / "patient" / "ct")
    if 'ct_dir = "ct_b12"' in text:
        _ct_12_bit_header(tmp / "ct_b12")
    if 'ct_dir = "ct_mixed"' in text:
        _ct_of_two_patients(tmp / "ct_mixed")
    for name, files in HLUT_FOLDERS.items():
        if f'calibration = "{name}"' in text or f'calibration = "{name}/' in text:
            (tmp / name).mkdir(exist_ok=True)
            (tmp / name / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111894,0.888106\n")
            for fname, body in files.items():
                if body is None:
                    (tmp / name / fname).unlink()
                else:
                    (tmp / name / fname).write_text(body)
    if '"RS_far.dcm"' in text:
        _far_rtstruct(tmp / "RS_far.dcm")
    if '"RP.dcm"' in text:
        shutil.copy(ROOT / "tests" / "data" / "dicom" / "RP_plan05.dcm", tmp / "RP.dcm")
    for name, (src, change) in PLAN_VARIANTS.items():   # a real plan changed
        if f'"{name}"' in text:
            import pydicom

            ds = pydicom.dcmread(ROOT / "tests" / "data" / "dicom" / src)
            change(ds)
            ds.save_as(tmp / name)
    if "@tmp/RD_TPS.dcm" in args:   # a planning system's RT Dose (RayStation), not an output of mcproton
        shutil.copy(next((ROOT / "tests" / "data" / "dicom" / "aptg_plan03").glob("RD*.dcm")), tmp / "RD_TPS.dcm")
    for name, change in MODEL_VARIANTS.items():   # dcpt_v5 changed
        if f'"{name}"' in text:
            from mcproton._io.beam_model import BUILTIN

            model, path = BUILTIN["dcpt_v5"], tmp / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(change(model.read_text()))
            shutil.copy(model.parent / "dcpt_beam_model_full.csv", path.parent / "dcpt_beam_model_full.csv")
    if args[:1] == ["@missing"]:
        return ["run", str(tmp / "missing.toml"), "--out", str(tmp / "out.h5")]
    out = str(tmp / f"out{i:02d}.h5")
    subst = {"@cfg": str(cfg), "@out": out, "@tmp": str(tmp)}
    args = [subst.get(a, a) if not a.startswith("@tmp/") else str(tmp / a[5:]) for a in args]
    return ["run", str(cfg), "--out", out, "--quiet", "--no-checkpoint", *args]


def run_cli(argv: list[str]) -> tuple[int, str]:
    """The exit status and the last stderr line of ``mcproton ARGV``, without the time of day in front (a pipe is
    no terminal: mcproton._io.console.stamped_stderr)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import log_lines   # tests/fakes.py

    proc = subprocess.run([sys.executable, "-m", "mcproton.cli", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return proc.returncode, (log_lines(proc.stderr.strip()) or [""])[-1]


def _rows(cases: list, tmp: Path, first: int) -> list[str]:
    rows = []
    for i, (case, args, text, _must) in enumerate(cases, first):
        rc, msg = run_cli(case_argv(args, text, tmp, i))
        msg = msg.replace(str(tmp), "$TMP").replace(str(ROOT), "$REPO")   # the CLI runs in the repository root
        shown = " ".join(a if " " not in a else repr(a) for a in args if a != "@missing")
        if text is not None:
            shown = (shown + " (config edited)").strip()
        if args[:1] == ["@missing"]:
            shown = "missing config path"
        rows.append(f"| {case} | `{shown}` | {rc} | {msg.replace('|', '&#124;')} |")
    return rows


#: The headings this script writes; a section under any other ``## `` heading (e.g. "DICOM inputs", written by
#: hand) is kept as it is when the table is regenerated.
GENERATED_HEADINGS = ("## Refused after the run",)


def table() -> str:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = _rows(CASES, tmp, 0)
        run_rows = _rows(RUN_CASES, tmp, len(CASES))
    head = ("# Bad inputs and their messages\n\n"
            "Generated by `python tests/run/make_bad_input_table.py` (do not edit by hand): each row runs\n"
            "`mcproton run CONFIG --out OUT --quiet --no-checkpoint ARGS` on a small water-pencil config\n"
            "(the config in the script) with one bad input.  Every case stops before any transport with exit\n"
            "status 2 and one message naming the key and the fix.\n\n"
            "| case | arguments | exit | message |\n|---|---|---|---|\n")
    run_head = ("\n## Refused after the run\n\n"
                "A finished run is checked before anything is written: no dose at all, or most of the beam's energy\n"
                "missed or left the grid (the energy ledger), exits with status 2, one message and no output\n"
                "(`--allow-empty` writes it anyway).\n\n"
                "| case | arguments | exit | message |\n|---|---|---|---|\n")
    return head + "\n".join(rows) + "\n" + run_head + "\n".join(run_rows) + "\n"


def hand_written_tail(text: str) -> str:
    """The part of docs/bad_inputs.md from the first ``## `` heading this script does not write (kept)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("## ") and not line.rstrip().startswith(GENERATED_HEADINGS):
            return "\n" + "".join(lines[i:]).rstrip("\n") + "\n"
    return ""


def main(argv: list[str]) -> int:
    text = table()
    if DOC.exists():
        text += hand_written_tail(DOC.read_text())
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} is out of date; run python {Path(__file__).relative_to(ROOT)}")
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote {DOC} ({len(CASES) + len(RUN_CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
