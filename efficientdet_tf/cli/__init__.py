"""absl command-line entry points."""
