"""A hooks module with a gunicorn hook ferrule never calls, beside one it does."""


def post_fork(server, worker):
    pass


def when_ready():
    pass
