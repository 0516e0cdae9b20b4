"""autojoint: self-configuring joint 3D lesion segmentation and scan-level diagnosis on CT."""

__version__ = "0.1.0"
