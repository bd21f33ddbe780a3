"""RAVDESS speech (manual download)."""
