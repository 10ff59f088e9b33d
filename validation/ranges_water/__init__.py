"""Validation case ``ranges_water`` (:mod:`.case`): R80, R90 and R20 of pencil beams in water, 70-230 MeV."""
