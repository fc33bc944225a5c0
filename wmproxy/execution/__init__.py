"""The execution edge: a worker process that takes started jobs from the database queue
and runs them through an execution backend (local processes by default)."""
