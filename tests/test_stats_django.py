"""Statistics of a Django site (issue 5): requests are labelled with the view Django resolved —
`resolver_match.view_name`, which is the URL pattern's name or, unnamed, the view's dotted
path — without the project adding a middleware; a URL Django cannot resolve is `unresolved`,
a static file the core serves is `static`.

The project is tests/django_site (its MIDDLEWARE has nothing of ferrule's), with
`django_site.settings_static` and DEBUG on so that the core serves `/static/`; served by
`manage.py server` and by `python -m ferrule` on its WSGI application. Over TCP and Unix.
"""

from __future__ import annotations

import pytest
from stats_helpers import Admin, admin_bind
from test_django import SITE, site_env, start_server

# path → the label it must get, and its status.
REQUESTS = [
    ("/whoami/", "whoami", 200),  # a named pattern
    ("/uri/", "django_site.views.uri", 200),  # unnamed: the dotted path
    ("/to-whoami/", "django_site.views.to_whoami", 302),
    ("/async-where/", "django_site.views.async_where", 200),  # an async view
    ("/wait-where/", "django_site.views.wait_where", 200),
    ("/boom/", "django_site.views.boom", 500),
    ("/no/such/page/", "unresolved", 404),
    ("/static/django_site/app.css", "static", 200),
]
CLASS = {200: 1, 302: 2, 404: 3, 500: 4}


def django_env(tmp_path) -> dict[str, str]:
    env = site_env(tmp_path)
    env["DJANGO_SETTINGS_MODULE"] = "django_site.settings_static"
    env["DJANGO_SITE_DEBUG"] = "1"
    return env


@pytest.fixture
def site(request, transport, tmp_path, serve):
    """(server, admin) for `manage.py server` or `python -m ferrule`, by the test's param."""
    admin = Admin(admin_bind(transport, tmp_path))
    env = django_env(tmp_path)
    if request.param == "manage.py":
        bind = (
            ["127.0.0.1:0"]
            if transport == "tcp"
            else ["--bind", f"unix:{tmp_path / 'django.sock'}"]
        )
        server = start_server([*bind, "--stats-bind", admin.bind], env)
        yield server, admin
        server.finish()
    else:
        app = "django_site.wsgi:application"
        yield serve(app, "--stats-bind", admin.bind, env=env, cwd=SITE), admin


@pytest.mark.parametrize("site", ["manage.py", "python -m ferrule"], indirect=True)
def test_django_requests_are_labelled_with_their_view(site):
    server, admin = site
    for path, _, status in REQUESTS:
        resp, _ = server.request("GET", path)
        assert resp.status == status, (path, resp.status)
    snap = admin.settled({label: 1 for _, label, _ in REQUESTS})
    for path, label, status in REQUESTS:
        m = snap.method(label, "GET")
        assert m["processing"]["count"] == 1, (path, label, m)
        assert m["status"][CLASS[status]] == 1, (path, label, m["status"])
    assert set(snap.labels) == {label for _, label, _ in REQUESTS}, snap.labels

    metrics = admin.metrics()
    assert metrics.labels_of("ferrule_requests_total", "view") == set(snap.labels)
    assert metrics.one("ferrule_requests_total", view="whoami", method="GET", code="2xx") == 1
    assert (
        metrics.one(
            "ferrule_requests_total", view="django_site.views.boom", method="GET", code="5xx"
        )
        == 1
    )


@pytest.mark.parametrize("site", ["manage.py"], indirect=True)
def test_the_same_view_under_different_urls_is_one_label(site):
    # The label is the view, not the URL: query strings do not make new labels.
    server, admin = site
    for query in ("", "?a=1", "?b=2"):
        assert server.request("GET", f"/whoami/{query}")[0].status == 200
    assert admin.settled({"whoami": 3}).labels == ["whoami"]
