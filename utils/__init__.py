"""Shared pieces of the four scripts: I/O, checkpoints, metrics, synthesis, training engine."""
