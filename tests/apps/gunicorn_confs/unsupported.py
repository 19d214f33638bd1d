"""A gunicorn.conf.py leaning on what ferrule does differently: gevent workers, daemon mode,
preloading, statsd, a socket passed by file descriptor, custom scheme headers, and a setting
name gunicorn does not know (so it ignored it)."""

wsgi_app = "mysite.wsgi"
bind = ["0.0.0.0:8000", "fd://3"]
worker_class = "gevent"
worker_connections = 2000
daemon = True
preload_app = True
capture_output = True
statsd_host = "localhost:8125"
secure_scheme_headers = {"X-SCHEME": "https"}
sendfile = False
reuse_port = True
logconfig_dict = {"version": 1, "loggers": {"gunicorn.error": {"level": "WARNING"}}}
loglevel = "debug"
keep_alive = 10
