"""Training data: image folders, TFRecords, colour augmentation, degradations."""
