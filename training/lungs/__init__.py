"""Lung-region inputs: a small lung segmentation model and the datasets derived with it."""
