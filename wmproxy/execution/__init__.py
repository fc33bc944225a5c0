"""The execution edge: a worker process that takes started jobs from the database queue
and runs each through an execution backend (local processes by default) and the job
wrapper, as the job's mapped account; heartbeats and adoption keep jobs from being lost
or run twice (``worker.py``)."""
