"""Foundations without TensorFlow models: atomic file writes, CPU features, precision."""
