"""Timing harness, sweeps and their reports."""
