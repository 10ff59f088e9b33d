"""Validation case ``step_convergence`` (:mod:`.case`): the dose does not depend on the transport step
length."""
