"""Batch upscaling on Apache Beam (Dataflow, Flink, Spark, local runners): `esrgan-beam`."""
