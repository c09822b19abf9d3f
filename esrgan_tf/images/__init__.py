"""Pixels and image files: safe reading/writing, encoders, MATLAB bicubic resize."""
