"""Validation case ``tissue_spr`` (:mod:`.case`): tissue stopping-power ratios and the elemental I-value set
of Bragg additivity."""
