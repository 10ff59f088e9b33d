"""Validation case ``topas_idd`` (:mod:`.case`): integrated depth-dose curves against TOPAS (code-to-code)."""
