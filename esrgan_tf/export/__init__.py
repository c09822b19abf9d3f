"""Model formats written for deployment: SavedModel (TF Serving), TFLite, ONNX."""
