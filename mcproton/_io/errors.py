"""Exceptions raised for bad input files (DICOM, calibrations, beam models).

All derive from ``ValueError`` so that callers that catch ``ValueError`` keep working; catch the specific
class to tell input problems apart from programming errors.
"""
from __future__ import annotations


class InputDataError(ValueError):
    """An input file or value is malformed or unsupported; the message says what and what to do."""


class DicomInputError(InputDataError):
    """A DICOM file or series cannot be used (unreadable, inconsistent, unsupported)."""


class CalibrationError(InputDataError):
    """A CT (HU) calibration file is malformed or inconsistent."""


class BeamModelError(InputDataError):
    """A beam-model file is malformed, or a requested energy / accessory is not in the model."""


class McprotonWarning(UserWarning):
    """A warning of mcproton's own (an input it reads with a caveat, a setting it assumed): the command line prints
    these as one ``mcproton: warning:`` line; filter them with ``warnings.filterwarnings(..., McprotonWarning)``."""


class McprotonRuntimeWarning(McprotonWarning, RuntimeWarning):
    """A McprotonWarning about the data or the result rather than the call (also a RuntimeWarning)."""
