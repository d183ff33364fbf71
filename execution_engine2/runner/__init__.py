"""The job runner (``ee2-runner JOB_ID SERVICE_URL``): runs one job's app and reports
its logs and result back to the service. Entry point: ``runner.main:main``."""
