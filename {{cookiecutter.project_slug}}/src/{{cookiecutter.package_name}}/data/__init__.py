"""Data: reading DICOM/NIfTI/PNG with their geometry, the manifest, splits and datasets."""
