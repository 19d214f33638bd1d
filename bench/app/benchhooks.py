"""The `--hooks` module bench/hooks.py measures: per-request hooks that do almost nothing, so
what is measured is what ferrule spends calling them."""


def pre_request(environ):
    environ["bench.hooked"] = True


def post_request(environ, status, timings):
    pass
