"""Run and physics settings, validated when made, and again by ``simulate`` (which runs a checked copy: a field
assigned after the settings were made is checked there).

Every field is also a config key (``[physics]`` and ``[run]`` sections of a run config, see README).
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

WATER_MODELS = ("icru90", "pstar")
#: elemental I-value sets for Bragg additivity (mcproton/_physics/stopping.py IVALUE_SETS)
IVALUE_SETS = ("icru37", "elemental")
BACKENDS = ("auto", "cpu", "cuda")

_T = TypeVar("_T")


def _refuse_unknown_keywords(cls: type[_T]) -> type[_T]:
    """Class decorator (above ``@dataclass``): a keyword that is not one of the fields is refused with a TypeError
    naming it, the field it is likely a misspelling of and the fields, where Python's own says only "unexpected
    keyword argument" (``RunSettings(primary=500)``, ``simulate(..., {"primary": 500})``,
    ``RunSettings(physics={"nucler": False})``).  The signature shown by ``help`` is the dataclass's."""
    init = cls.__init__
    names = [f.name for f in fields(cls)]   # type: ignore[arg-type]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for k in kwargs:
            if k not in names:
                from ._io.errors import did_you_mean

                raise TypeError(f"{cls.__name__} has no setting {k!r}{did_you_mean(k, names)}; its settings are "
                                f"{', '.join(names)}")
        init(self, *args, **kwargs)

    setattr(cls, "__init__", __init__)
    return cls


@_refuse_unknown_keywords
@dataclass
class PhysicsSettings:
    """Physics options of the transport (defaults follow the models documented in docs/physics.md).

    water_model : "icru90" (I = 78 eV, ICRU Report 90) or "pstar" (I = 75 eV, ICRU Report 49).
    ivalue_set : elemental I-values for Bragg additivity, used for materials without an explicit I-value (CT
        tissues, user compositions): "icru37" (ICRU 37 Table 5.1 condensed-phase values, H 19.2, C 81, N 82,
        O 106 eV; default) or "elemental" (ICRU 37/49 pure-element values, O 95 eV; comparison only).
    nuclear : nuclear interactions: nonelastic (ICRU 63 cross sections) with secondary protons, elastic
        scattering on hydrogen (p-p) and on heavier nuclei.
    nuclear_elastic : with ``nuclear``, include nuclear elastic scattering on nuclei heavier than hydrogen
        (O, C, Ca, ...; on by default; off only to study its effect).
    straggling : Gaussian energy-loss straggling (Bohr variance with relativistic correction).
    msc : multiple Coulomb scattering (Gottschalk differential Highland scattering power).
    e_cut_mev : protons below this kinetic energy deposit their energy locally (MeV); a primary sampled at or below
        it is not transported (no dose, its energy counted as missed; a beam with more than 1e-6 of its primaries
        there is warned about: docs/physics.md).
    max_eloss_fraction : largest fractional energy loss per step.
    max_step_mm : longest step (mm); steps also end where the material changes (they may cross voxels of one material).
    """

    water_model: str = "icru90"
    ivalue_set: str = "icru37"
    nuclear: bool = True
    nuclear_elastic: bool = True
    straggling: bool = True
    msc: bool = True
    e_cut_mev: float = 0.5
    max_eloss_fraction: float = 0.2
    max_step_mm: float = 5.0

    def __post_init__(self) -> None:
        for name in _BOOL_FIELDS:
            setattr(self, name, _switch(f"physics.{name}", getattr(self, name)))
        for name in ("e_cut_mev", "max_eloss_fraction", "max_step_mm"):
            _check_number(f"physics.{name}", getattr(self, name))
        if self.water_model not in WATER_MODELS:
            raise ValueError(f"physics.water_model must be one of {WATER_MODELS}; got {self.water_model!r}")
        if self.ivalue_set not in IVALUE_SETS:
            raise ValueError(f"physics.ivalue_set must be one of {IVALUE_SETS} (elemental I-values for Bragg "
                             f"additivity; 'icru37' is the default); got {self.ivalue_set!r}")
        if not (0.05 <= self.e_cut_mev <= 10):
            raise ValueError(f"physics.e_cut_mev must lie in 0.05..10 MeV; got {self.e_cut_mev}")
        if not (0.01 <= self.max_eloss_fraction <= 0.5):
            raise ValueError(f"physics.max_eloss_fraction must lie in 0.01..0.5; got {self.max_eloss_fraction}")
        if not (0.01 <= self.max_step_mm <= 100):
            raise ValueError(f"physics.max_step_mm must lie in 0.01..100 mm; got {self.max_step_mm}")


@_refuse_unknown_keywords
@dataclass
class RunSettings:
    """How a simulation is run.

    primaries : number of primary proton histories of one beam: ``simulate`` runs one beam; ``mcproton run``
        runs each beam of a plan with this many (run.primaries), so a plan of n beams transports n times it.
    seed : run seed (with the history index it fixes every random number of a history).
    backend : "auto" (cuda if CuPy and a device are present, else cpu), "cpu" or "cuda".
    batches : number of statistical batches (>= 2) for the per-voxel uncertainty; not used where ``batch_size``,
        ``target_uncertainty`` or ``time_limit_s`` is set, nor where its batches would exceed the largest default
        batch (``batch_size`` below; ``mcproton run`` says so in its log where the config gives run.batches).
    threads : CPU threads (None = OMP_NUM_THREADS, else all the CPUs the process may use: its CPU affinity,
        as taskset or a Slurm allocation sets it, not every CPU of the machine).  At most :func:`thread_limit`; so is
        an OMP_NUM_THREADS taken for it (more is refused, naming the variable).
    gpu : CUDA device index for the cuda backend (None = device 0; a Dask run gives each worker its own GPU).
    batch_size : histories per batch (None: primaries / batches, or primaries / 100 when a target
        uncertainty or a time limit is set; at most 10^6 on the CPU, 10^7 on the GPU); memory does not
        depend on it or on the number of batches.  At most MAX_BATCH_SIZE (2^25): one batch is one launch of
        the kernel, whose 64-bit sums must not wrap.
    target_uncertainty : stop when the mean relative uncertainty over the voxels above 50 % of Dmax falls
        to this (a fraction: e.g. 0.01 for 1 %); None = no target.  primaries is then the upper limit.  In (0, 1)
        here; a config's run.target_uncertainty (``mcproton run``) is refused from 0.1 (10 %) as a percent typed
        for a fraction (:data:`MAX_CONFIG_TARGET_UNCERTAINTY`).
    time_limit_s : stop after this many seconds of transport (checked between batches, summed over
        resumed segments); None = no limit.  ``simulate`` runs one beam, so it is that beam's; ``mcproton run``
        applies it to the whole run, whose beams share it.
    checkpoint_interval_s : seconds between checkpoints of a CLI run (0 = after every batch).
    """

    primaries: int = 100_000
    seed: int = 12345
    backend: str = "auto"
    batches: int = 10
    threads: int | None = None
    physics: PhysicsSettings = field(default_factory=PhysicsSettings)
    gpu: int | None = None
    batch_size: int | None = None
    target_uncertainty: float | None = None
    time_limit_s: float | None = None
    checkpoint_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.physics, dict):
            self.physics = PhysicsSettings(**self.physics)
        if not isinstance(self.physics, PhysicsSettings):
            raise ValueError(f"run physics must be a PhysicsSettings or a dict of its fields; got "
                             f"{type(self.physics).__name__}")
        # whole numbers are kept as Python ints (what the run uses and its provenance records): 1e5 is 100000, 2.5
        # and "7" are refused
        for name, what in _WHOLE_FIELDS.items():
            v = getattr(self, name)
            if v is not None or name in ("primaries", "seed", "batches"):
                setattr(self, name, _whole(f"run.{name}", v, what))
        for name in ("target_uncertainty", "time_limit_s", "checkpoint_interval_s"):
            if getattr(self, name) is not None:
                _check_number(f"run.{name}", getattr(self, name))
        if not isinstance(self.backend, str):
            raise ValueError(f"run.backend must be one of {BACKENDS} (text); got {self.backend!r}")
        _check_stream_settings(self)
        if self.primaries < 1:
            raise ValueError(f"run.primaries must be a positive integer; got {self.primaries}")
        if self.primaries > MAX_PRIMARIES:
            raise ValueError(f"run.primaries {self.primaries} is too large (at most 2^40 - 1 = {MAX_PRIMARIES}); "
                             f"{MORE_THAN_MAX_PRIMARIES}")
        if not (0 <= self.seed < 2**63):
            raise ValueError(f"run.seed must be a non-negative integer below 2^63; got {self.seed}")
        if self.backend not in BACKENDS:
            raise ValueError(f"run.backend must be one of {BACKENDS}; got {self.backend!r}")
        if self.batches < 2:
            raise ValueError(f"run.batches must be >= 2 (the uncertainty needs at least two); got {self.batches}")
        if self.batches > self.primaries:
            self.batches = max(2, min(self.batches, self.primaries))
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"run.threads must be >= 1 or unset; got {self.threads}")
        if self.threads is not None and self.threads > thread_limit():
            from ._cpus import machine_cpus

            raise ValueError(f"run.threads = {self.threads} is more than mcproton accepts here ({thread_limit()}: "
                             f"{MAX_THREADS_PER_CPU} per CPU of this machine's {machine_cpus()} CPUs, never "
                             f"fewer than {MIN_THREAD_LIMIT}); each thread needs its own stack, and thousands "
                             "abort or crash the run, while more threads than CPUs only share them: leave run.threads "
                             "unset to use "
                             "every CPU the process may use, or give at most the number of CPUs")
        if self.threads is None and self.backend != "cuda":   # the CPU backend's default: OMP_NUM_THREADS, capped alike
            from ._cpus import refuse_too_many_omp_threads

            refuse_too_many_omp_threads()
        if self.gpu is not None and self.gpu < 0:
            raise ValueError(f"run.gpu must be a CUDA device index (0, 1, ...) or unset; got {self.gpu!r}")


#: The most CPU threads per CPU of the machine that run.threads may ask for, and the most it may ask for on any
#: machine: each OpenMP thread has its own stack (8 MB by default), so run.threads = 1000 under an 8 GB address-space
#: limit aborted in libgomp ("Thread creation failed") and 100000 ended in a segmentation fault, with no mcproton
#: message (the hostile-inputs audit of 2026-12-06, F7).  More threads than CPUs only share them; 4 per CPU leaves
#: room for hyper-threads and oversubscription tests, and MIN_THREAD_LIMIT a machine with few CPUs that prepares a
#: run for a larger one (Dask workers).
MAX_THREADS_PER_CPU = 4
MIN_THREAD_LIMIT = 256
#: run.target_uncertainty below this (a fraction; 1e-4 = 0.01 %) is refused: by the 1/sqrt(N) law a plan at 1 %
#: after 1e6 primaries needs 1e10 for 0.01 %, and 1e-5 would need 1e12, about run.primaries' largest (2^40 - 1);
#: 1e-300 ended in an OverflowError (the hostile-inputs audit of 2026-12-06, F8)
MIN_TARGET_UNCERTAINTY = 1e-4
#: run.target_uncertainty of a config (``mcproton run``'s TOML or --set) at or above this (a fraction: 10 %) is refused
#: as a percent typed for a fraction: 0.5 meant 0.5 % stopped a run at 3 % with a tenth of its primaries, without a
#: word (the units audit of 2026-12-07, F2).  A mean uncertainty of 10 % or more above 50 % of the maximum is no dose
#: to read (clinical Monte Carlo runs to 0.5-2 %; mcproton check FAILs its own MC above 2 %), while 0.1-0.99 are
#: what 0.1 %-0.99 % typed as a percent give.  RunSettings itself (Python) takes (0, 1): mcproton check runs each beam
#: to its target x sqrt(beams), and a quick test may stop at 0.9.  mcproton check's --target-uncertainty says the
#: same (:func:`percent_for_fraction`): refused from 1, and from 0.1 warned that its FAIL is sure.
MAX_CONFIG_TARGET_UNCERTAINTY = 0.1
#: The largest run.primaries, 2^40 - 1: a beam's histories are indexed below 2^40 (each beam of a plan has its own
#: range of 2^40 history indices: mcproton/_run/engine.py)
MAX_PRIMARIES = 2**40 - 1
#: what to do for more primaries of a beam than MAX_PRIMARIES: runs of one seed repeat the same histories, so a split
#: run averaged without other seeds has the statistics of one part (overflow audit 29, F5: "split the run" said no more)
MORE_THAN_MAX_PRIMARIES = ("run at most 2^40 - 1 primaries per beam, and more as several runs, each with a different "
                           "run.seed (the same seed repeats the same histories), taking the primaries-weighted mean of "
                           "their doses")
#: The most histories of one batch (run.batch_size), i.e. of one launch of the transport kernel.  A launch sums its
#: deposits and its energy ledger in 64-bit integers in units of 2^-24 MeV (kernels/params.h MCP_TALLY_SCALE), with no
#: overflow check in the kernel: a primary brings at most 400 MeV (the physics tables' E_MAX_MEV), so 2^25 histories
#: sum to at most 400 x 2^25 x 2^24 = 2^57.6 units, 20 times below 2^62, in the ledger, a voxel's deposit and its dose
#: to water (stopping-power ratio below 2 for every material); the LET numerator (2^-16 MeV x MeV cm2/g) stays below
#: 2^62 while the energy-weighted mean mass stopping power of a launch is below 2^62 / (400 x 2^25 x 2^16) = 2^21 / 400
#: = 5243 MeV cm2/g (at most ~900 in water, at its peak near 0.08 MeV).  A batch then also fits
#: beside a running sum at its limit (mcproton._run.engine.TALLY_SUM_LIMIT, 2^62) without wrapping int64.  The
#: default batches are smaller (streaming.DEFAULT_MAX_BATCH: 10^6 on the CPU, 10^7 on the GPU); the scale audit 19,
#: F2/F4: run.batch_size was not capped.
MAX_BATCH_SIZE = 1 << 25


def thread_limit() -> int:
    """The most run.threads accepted here: :data:`MAX_THREADS_PER_CPU` x the machine's CPUs, at least
    :data:`MIN_THREAD_LIMIT`."""
    from ._cpus import machine_cpus

    return max(MIN_THREAD_LIMIT, MAX_THREADS_PER_CPU * machine_cpus())


#: the whole-number fields of RunSettings and what each counts (for the message of a value that is not one)
_WHOLE_FIELDS = {"primaries": "the number of primary protons per beam, e.g. 100000",
                 "seed": "the run seed, a non-negative integer, e.g. 12345",
                 "batches": "the number of statistical batches, e.g. 10",
                 "threads": "the number of CPU threads, or None for all the CPUs the process may use",
                 "gpu": "a CUDA device index (0, 1, ...), or None",
                 "batch_size": "histories per batch, or None"}
#: the on/off switches of PhysicsSettings
_BOOL_FIELDS = ("nuclear", "nuclear_elastic", "straggling", "msc")


def _kind(v: object) -> str:
    if isinstance(v, str):
        return "text"
    shape = getattr(v, "shape", None)
    return f"array of shape {shape}" if isinstance(shape, tuple) and shape != () else type(v).__name__


def _short(v: object, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters (a large array in a message)."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _real(key: str, v: object, what: str) -> float:
    """``v`` as a Python float where it is one real number: an int, a float, a NumPy scalar or a 0-d NumPy array
    (``np.float32(70)``, ``np.array(70.0)``).  Text, None, a bool, a list or an array of several values is refused
    with a ValueError naming ``key`` and ``what`` it needs, as RunSettings refuses them (before, Spot("70") kept the
    text, and Spot(70, weight=None) ended in a NumPy ufunc error that named no parameter); the caller checks the
    range."""
    dtype = getattr(v, "dtype", None)
    if getattr(v, "shape", None) == () and getattr(dtype, "kind", "") in ("i", "u", "f"):
        v = v.item()   # type: ignore[attr-defined]   # a NumPy scalar or 0-d array
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        how = ("as a number without quotes" if isinstance(v, str)
               else "one number, not several" if hasattr(v, "__len__") else "as a number")
        raise ValueError(f"{key} = {_short(v)} has the wrong type ({_kind(v)}): give {what}, {how}")
    return float(v)


def _whole(key: str, v: object, what: str) -> int:
    """``v`` as a Python int where it is a whole number (an int, a NumPy integer, or a float such as 1e5 with no
    fraction); a bool, text, a fraction or NaN is refused with a message naming ``key``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{key} = {v!r} has the wrong type ({_kind(v)}): give {what}, as a number without quotes")
    if isinstance(v, numbers.Integral):
        return int(v)   # exact (a seed up to 2^63 is not a float)
    f = float(v)
    if not (math.isfinite(f) and f.is_integer()):
        raise ValueError(f"{key} = {v!r} is not a whole number: give {what}")
    return int(f)


def _check_number(key: str, v: object) -> None:
    """Refuse a bool or text where a real number goes, with a message naming ``key`` (the value is kept as given;
    the caller checks its range)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{key} = {v!r} has the wrong type ({_kind(v)}): give a number, without quotes")


def _switch(key: str, v: object) -> bool:
    """``v`` as a Python bool where it is True or False (a NumPy bool too); anything else ("false", 0, 1, None)
    is refused: a non-empty text such as "false" would otherwise switch the physics on."""
    import numpy as np

    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise ValueError(f"{key} = {v!r} has the wrong type ({_kind(v)}): give True or False")


def percent_for_fraction(v: float) -> str:
    """The hint for a relative value ``v`` that reads as a percent typed for a fraction (0.1 <= v < 100):
    " (0.5 % is 0.005)"; "" otherwise."""
    return f" ({v:g} % is {v / 100:g})" if 0.1 <= v < 100 else ""


def check_config_target_uncertainty(v: Any) -> None:
    """Refuse a config's run.target_uncertainty at or above :data:`MAX_CONFIG_TARGET_UNCERTAINTY` (below 1: from
    1 RunSettings refuses it) as a percent typed for a fraction."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return   # None (no target), or a type RunSettings refuses
    v = float(v)
    if MAX_CONFIG_TARGET_UNCERTAINTY <= v < 1:
        raise ValueError(f"run.target_uncertainty = {v:g} is {100 * v:g} %, at which no run gives a dose to read "
                         f"(from {100 * MAX_CONFIG_TARGET_UNCERTAINTY:g} %; clinical Monte Carlo runs to 0.5-2 %): it "
                         f"is a fraction, so this looks like a percent{percent_for_fraction(v)}: give "
                         f"{v / 100:g} for {v:g} % (e.g. 0.01 for 1 %)")


def _check_stream_settings(s: RunSettings) -> None:
    if s.batch_size is not None and s.batch_size < 1:
        raise ValueError(f"run.batch_size must be a positive integer (histories per batch) or unset; "
                         f"got {s.batch_size}")
    if s.batch_size is not None and s.batch_size > MAX_BATCH_SIZE:
        raise ValueError(f"run.batch_size = {s.batch_size:,} is more than one batch may hold ({MAX_BATCH_SIZE:,} = "
                         "2^25 histories: a batch is one launch of the transport kernel, whose 64-bit energy sums "
                         f"could overflow beyond it); give at most {MAX_BATCH_SIZE:,} (a larger batch would not be "
                         "faster), or leave it unset")
    if s.target_uncertainty is not None and not (0 < s.target_uncertainty < 1):
        raise ValueError(f"run.target_uncertainty must be a fraction in (0, 1), e.g. 0.01 for 1 %; "
                         f"got {s.target_uncertainty}{percent_for_fraction(s.target_uncertainty)}")
    if s.target_uncertainty is not None and s.target_uncertainty < MIN_TARGET_UNCERTAINTY:
        raise ValueError(f"run.target_uncertainty = {s.target_uncertainty:g} is below {MIN_TARGET_UNCERTAINTY:g} "
                         f"({100 * MIN_TARGET_UNCERTAINTY:g} %), which no run reaches: the uncertainty falls as "
                         "1/sqrt(primaries), so a plan at 1 % after 1e6 primaries needs 1e10 for 0.01 % and 1e12 "
                         "(about run.primaries' largest, 2^40 - 1) for 0.001 %; give e.g. 0.01 for 1 % (0.005 to 0.02 "
                         "is usual)")
    if s.time_limit_s is not None and not (s.time_limit_s > 0 and math.isfinite(s.time_limit_s)):
        raise ValueError(f"run.time_limit_s must be a positive number of seconds or unset; "
                         f"got {s.time_limit_s}")
    if not (s.checkpoint_interval_s >= 0 and math.isfinite(s.checkpoint_interval_s)):
        raise ValueError(f"run.checkpoint_interval_s must be >= 0 seconds (0 = after every batch); "
                         f"got {s.checkpoint_interval_s}")


def field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)]
