"""Label each Django request with its view for ferrule's statistics, keep cancelled requests
out of Django's error path, and import the URLconf before serving.

ferrule calls :func:`install` when it serves a Django project (``manage.py server`` or
``ferrule mysite.wsgi``). It wraps ``BaseHandler.resolve_request``, the one place Django
resolves a URL to a view, so every request that reaches URL resolution is labelled with
``resolver_match.view_name`` (the URL pattern's name with its namespaces, or the view's dotted
path for an unnamed pattern) without any middleware in the project. A URL that resolves to
nothing keeps the label ``unresolved``. Only requests served by ferrule carry
``environ["ferrule.request"]``; Django's test client and other servers are untouched.

It also wraps ``response_for_exception``, where Django turns an exception a view or middleware
raised into a response: a request ferrule cancelled (``ClientDisconnected``, ``RequestTimeout``,
a shutdown) gets a bare 499, 504 or 503 — which nobody reads — and one info line, instead of a
500 with a traceback in ``django.request``, a ``got_request_exception`` signal (Sentry) and a
mail to ``ADMINS``. A middleware that catches them first still does.
"""

from __future__ import annotations

import logging
from typing import Any

from ferrule._errors import ClientDisconnected, RequestCancelled, RequestTimeout

_INSTALLED = "_ferrule_labels_views"
log = logging.getLogger("ferrule")


def install() -> bool:
    """Label requests with their views from now on; False if this Django cannot be hooked."""
    from django.core.handlers.base import BaseHandler

    resolve_request = getattr(BaseHandler, "resolve_request", None)
    if resolve_request is None:  # Django < 3.1
        return False
    from ferrule import _django_asgi

    _django_asgi.install()
    _quiet_cancellations()
    if getattr(resolve_request, _INSTALLED, False):
        return True

    def resolve_and_label(self: Any, request: Any) -> Any:
        match = resolve_request(self, request)
        server_request = request.META.get("ferrule.request")
        if server_request is None:  # under ASGI, the scope carries it
            server_request = getattr(request, "scope", {}).get("ferrule.request")
        if server_request is not None:
            server_request.label = match.view_name or match._func_path
        return match

    setattr(resolve_and_label, _INSTALLED, True)
    resolve_and_label.__wrapped__ = resolve_request  # type: ignore[attr-defined]
    resolve_and_label.__doc__ = resolve_request.__doc__
    BaseHandler.resolve_request = resolve_and_label  # type: ignore[method-assign]
    return True


def _quiet_cancellations() -> None:
    """Django's ``response_for_exception``, with ferrule's cancellations answered quietly;
    idempotent. Django looks the function up by its module's global name at every call, so
    the wrapper serves its sync and async middleware alike."""
    from django.core.handlers import exception

    original = exception.response_for_exception
    if getattr(original, _INSTALLED, False):
        return

    def response_for_exception(request: Any, exc: BaseException) -> Any:
        if not isinstance(exc, RequestCancelled):
            return original(request, exc)
        from django.http import HttpResponse

        if isinstance(exc, ClientDisconnected):
            status, why = 499, "the client disconnected"
        elif isinstance(exc, RequestTimeout):
            status, why = 504, "it ran longer than --timeout"
        else:
            status, why = 503, "the server is shutting down"
        # The exception raised into a thread after --cancel-grace carries no message.
        log.info("%s %s was stopped in its view (%s)", request.method, request.get_full_path(), why)
        return HttpResponse(status=status)

    setattr(response_for_exception, _INSTALLED, True)
    response_for_exception.__wrapped__ = original  # type: ignore[attr-defined]
    exception.response_for_exception = response_for_exception


def import_urlconf() -> None:
    """Import ``ROOT_URLCONF`` and what it imports (views, included URLconfs), as Django's
    system checks do. Django imports it lazily, at the first request, and a URLconf that
    fails to import then fails every request: ferrule calls this after loading the
    application so the error stops the start instead, or, reloading, is served once as the
    error page."""
    from django.conf import settings

    if not getattr(settings, "ROOT_URLCONF", None):
        return
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - reading it imports the URLconf


def asgi_application_setting() -> str | None:
    """`settings.ASGI_APPLICATION`, or None when the project has none (it then runs as WSGI).
    Django itself never reads the setting; daphne's and Channels' `runserver` do, and so does
    `manage.py server`."""
    from django.conf import settings

    return getattr(settings, "ASGI_APPLICATION", None) or None
