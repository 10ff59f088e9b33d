"""The registry of the validation cases: :data:`CASES` lists them in run order.

Each case is a package beside its data, ``validation/<name>/``: its reference data (with provenance header), a
README that names the source, the kind of data, the simulation set-up, the metrics and the tolerances with
their reasons, and ``case.py`` with the function ``case_<name>(ctx) -> CaseResult``. Helpers shared by the
cases are in :mod:`.core` (run context, results, the pencil-beam depth dose), :mod:`.metrics`,
:mod:`.reference` and :mod:`.plots`. The budgets (primaries per run) are set so that ``--quick`` needs about
6e6 protons in all, every quick metric standing at least 2 measured seed-to-seed sd inside its tolerance
(validation/quick_spread.csv, README "Why these tolerances"), and ``--full`` gives sub-percent statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .backend_agreement.case import case_backend_agreement
from .catana_62mev.case import case_catana_62mev
from .core import CaseResult, Context
from .dcpt_plan02.case import case_dcpt_plan02
from .energy_conservation.case import case_energy_conservation
from .heterogeneity_slabs.case import case_heterogeneity_slabs
from .lateral_spread.case import case_lateral_spread
from .range_shifter.case import case_range_shifter
from .ranges_water.case import case_ranges_water
from .step_convergence.case import case_step_convergence
from .stopping_power.case import case_stopping_power
from .tissue_spr.case import case_tissue_spr
from .topas_idd.case import case_topas_idd


@dataclass
class CaseSpec:
    name: str
    func: Callable[[Context], CaseResult]
    needs_engine: bool = True


CASES: list[CaseSpec] = [
    CaseSpec("stopping_power", case_stopping_power, needs_engine=False),
    CaseSpec("ranges_water", case_ranges_water),
    CaseSpec("topas_idd", case_topas_idd),
    CaseSpec("catana_62mev", case_catana_62mev),
    CaseSpec("heterogeneity_slabs", case_heterogeneity_slabs),
    CaseSpec("lateral_spread", case_lateral_spread),
    CaseSpec("range_shifter", case_range_shifter),
    CaseSpec("step_convergence", case_step_convergence),
    CaseSpec("dcpt_plan02", case_dcpt_plan02),
    CaseSpec("tissue_spr", case_tissue_spr, needs_engine=False),
    CaseSpec("backend_agreement", case_backend_agreement),
    CaseSpec("energy_conservation", case_energy_conservation),   # last: it checks the ledgers of all runs
]
CASE_NAMES = [c.name for c in CASES]
