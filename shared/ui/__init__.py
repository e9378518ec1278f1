"""The web UI: MLflow's own, served per project, and what it needs besides the API (docs/ui.md)."""
