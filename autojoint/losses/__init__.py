"""Segmentation, diagnosis and task-aware losses.

Importing the package registers the built-in segmentation losses (``segmentation``) in the
registry (``registry``), so ``get_segmentation_loss`` always sees them.
"""

from autojoint.losses import segmentation as segmentation  # registers the built-in losses
