"""Validation case ``dcpt_plan02`` (:mod:`.case`): a clinical RT Ion Plan against five Monte Carlo codes
(dose and LETd)."""
