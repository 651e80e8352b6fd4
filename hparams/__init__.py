"""The hyper-parameter files (defaults.yaml and one yaml per model), installed as package data."""
