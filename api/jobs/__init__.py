"""Background work on a PostgreSQL job queue (pgqueuer), framework-free.

`kring serve` runs a worker in-process (`start_in_process`), `kring worker`
runs one alone (`main_worker`); both schedule and run the periodic jobs in
`periodic.py`. Tests and the demo call `run_due_jobs` directly.
"""

from api.jobs.periodic import PERIODIC_JOBS, DueJobsResult, run_due_jobs
from api.jobs.worker import (
    WorkerHandle,
    keep_worker_running,
    main_worker,
    run_worker,
    start_in_process,
)

__all__ = [
    "PERIODIC_JOBS",
    "DueJobsResult",
    "WorkerHandle",
    "keep_worker_running",
    "main_worker",
    "run_due_jobs",
    "run_worker",
    "start_in_process",
]
