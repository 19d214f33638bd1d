"""A gunicorn.conf.py with the hooks services usually grow: error reporting set up in each
worker, a request log, prometheus_client's multiprocess clean-up, a stack dump on timeout, and
TLS tightened through ssl_context. The functions are never called here; only their names and
signatures matter."""

import os

bind = "0.0.0.0:8443"
workers = 4
certfile = "/etc/mysite/tls/fullchain.pem"
keyfile = "/etc/mysite/tls/privkey.pem"


def on_starting(server):
    server.log.info("mysite is starting")


def when_ready(server):
    server.log.info("mysite is ready")


def post_worker_init(worker):
    import sentry_sdk

    sentry_sdk.init(dsn=os.environ.get("SENTRY_DSN"), traces_sample_rate=0.1)


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)


def post_request(worker, req, environ, resp):
    worker.log.debug("%s %s -> %s", req.method, req.path, resp.status)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_abort(worker):
    import faulthandler

    faulthandler.dump_traceback()


def ssl_context(conf, default_ssl_context_factory):
    import ssl

    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context
