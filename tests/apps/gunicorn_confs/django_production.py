"""A Django site's gunicorn.conf.py in production, as such files are usually written: nginx in
front over a Unix socket, a TCP port for the load balancer's health checks, workers from the
core count, recycling against leaks."""

import multiprocessing
import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))

chdir = BASE_DIR
wsgi_app = "mysite.wsgi:application"
bind = ["unix:/run/mysite/gunicorn.sock", "127.0.0.1:8001"]
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = 4
timeout = 60
graceful_timeout = 30
keepalive = 75  # longer than the load balancer's idle timeout
max_requests = 2000
max_requests_jitter = 200
limit_request_line = 8190
limit_request_field_size = 16380
forwarded_allow_ips = "10.0.0.0/8,127.0.0.1"
accesslog = "-"
errorlog = "-"
loglevel = "info"
pidfile = "/run/mysite/gunicorn.pid"
umask = 0o007
raw_env = ["DJANGO_SETTINGS_MODULE=mysite.settings", "DJANGO_DEBUG=0"]
