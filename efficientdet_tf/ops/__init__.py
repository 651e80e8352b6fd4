"""Shared operations used by data, inference, export, training and evaluation alike."""
