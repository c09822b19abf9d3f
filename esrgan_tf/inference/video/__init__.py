"""Video upscaling with PyAV: streaming decode → model → encode, every stream kept, resumable."""
