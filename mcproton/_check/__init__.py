"""``mcproton check``: an independent Monte Carlo verification of a treatment plan against the planning
system's dose (gamma, dose differences, DVH metrics per structure, distal range per beam; HTML + JSON report).
See docs/check.md."""
from .api import CheckResult, check
from .inputs import CheckInputError
from .levels import ActionLevels

__all__ = ["ActionLevels", "CheckInputError", "CheckResult", "check"]
