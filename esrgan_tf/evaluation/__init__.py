"""Evaluation: image-quality metrics (full-reference and no-reference) and reports."""
