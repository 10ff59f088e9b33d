"""Validation case ``energy_conservation`` (:mod:`.case`): the energy ledger of every simulation."""
