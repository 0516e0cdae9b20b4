"""Shared runtime of training and inference: compute devices and the checkpoint format."""
