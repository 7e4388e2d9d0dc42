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
