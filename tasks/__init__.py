"""rq job functions. Each is a thin entry point into the worker node running the job."""
