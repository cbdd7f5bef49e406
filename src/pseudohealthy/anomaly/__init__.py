"""Anomaly maps from real and pseudo-healthy FLAIR, and clusters for reporting."""
