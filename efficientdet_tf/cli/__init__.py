"""absl command-line entry points (importing them changes nothing process-wide; each tool's `run()` does)."""
