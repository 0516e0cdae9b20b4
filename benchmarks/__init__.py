"""Runnable measurement scripts; not installed. Run from the repository root (README)."""
