"""Validation case ``backend_agreement`` (:mod:`.case`): CPU and GPU backends agree within statistics."""
