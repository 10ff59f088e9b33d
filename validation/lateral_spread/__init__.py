"""Validation case ``lateral_spread`` (:mod:`.case`): sigma of a pencil beam in water against Fermi-Eyges /
Highland."""
