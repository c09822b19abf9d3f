"""The benchmark harness behind `scripts/benchmark.py`.

Layout, bottom to top:
  measure   FLOP counts, timing (median after warm-up), peak RSS (VmHWM), CPU flags, tile math.
  engines   What jobs run on: the sample photo, models, inference engines, uint8 PSNR.
  training  Train-step and input-pipeline timings.  serving  gRPC vs in-process timings.
  jobs      The one child-process runner (`run_job`; `run_basicsr_job` for BasicSR's
            interpreter) and the job table.
  side_by_side  Rows of our train step vs BasicSR's.
  multihead  All heads of a multi-head model from one trunk pass vs separate models (child job);
             multihead_rows  its report rows.
  sections  The report sections (rows of metric, value, unit, goal, note).
`basicsr_steps` stands apart: BasicSR's own train step, run by an interpreter with torch + basicsr
(no TensorFlow), imported by nothing here.
`python -m esrgan_tf.benchmarking` is the child side of `jobs.run_job` (a JSON job on stdin).
"""
