"""Numpy array helpers below every pipeline stage (the crop to the body is shared by the
fingerprint, preprocessing and inference)."""
