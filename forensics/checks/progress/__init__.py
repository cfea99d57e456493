"""Progress: whether the run was learning at all (training loss, validation metrics)."""
