"""Validation case ``range_shifter`` (:mod:`.case`): spot sigma at the isocentre behind a range shifter, and
the range shift by its WET."""
