"""Scripts that produce or convert datasets into the nnU-Net v2 raw layout autojoint reads."""
