"""Validation case ``heterogeneity_slabs`` (:mod:`.case`): range shift of bone, lung and adipose slabs
against PSTAR WET."""
