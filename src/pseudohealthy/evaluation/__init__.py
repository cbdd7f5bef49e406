"""Metrics and evaluation summaries."""
