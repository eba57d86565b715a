"""Run the notebooks on AWS Glue 5.0: a notebook becomes a Glue job script (`python -m lib.glue`).

- `script`: papermill injects the parameters (prepare only), the code cells become a job script.
- `deploy`: the `glue:` settings of a params file, the packaged `lib`, S3 uploads, the job, its runs.
- `job_args`: read inside the job; stdlib only, so it imports anywhere Glue runs.
"""
