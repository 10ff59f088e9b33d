"""Validation case ``stopping_power`` (:mod:`.case`): electronic stopping powers and CSDA ranges against
PSTAR / ICRU 90."""
