# gunicorn settings for `make run`; override with GUNICORN_CMD_ARGS.
import os

workers = int(os.environ.get("WEB_WORKERS", "2"))
timeout = 120
accesslog = "-"


def child_exit(server, worker):
    # Drop a dead worker's live gauges from the shared Prometheus files.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # Warm each worker before it takes a request: import the model libraries and load the
    # production model, so that the first /health or /predict is not the one that waits for them.
    import time

    started = time.monotonic()
    try:
        from classifier import inference

        inference.get_classifier()
    except Exception as exc:  # no model yet, or the registry is away: the first /predict loads it
        worker.log.warning("worker %s started cold: %s", worker.pid, exc)
        return
    worker.log.info("worker %s warm in %.1f s", worker.pid, time.monotonic() - started)
