"""Hooks copied from a gunicorn.conf.py: gunicorn's signatures, which ferrule refuses."""


def post_worker_init(worker):
    worker.log.info("ready")


def pre_fork(server, worker):
    pass
