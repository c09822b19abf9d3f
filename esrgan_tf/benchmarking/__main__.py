"""Child side of `esrgan_tf.benchmarking.jobs.run_job`: one JSON job on stdin, result on stdout."""

from esrgan_tf.benchmarking import jobs

if __name__ == "__main__":
  jobs.child_main()
