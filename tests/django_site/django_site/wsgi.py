"""WSGI_APPLICATION for the test project: Django, plus one probe path answered outside it."""

import os

from django.core.wsgi import get_wsgi_application

from django_site import probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

django_application = get_wsgi_application()


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/_probe/db-connections":
        return probes.db_connections(environ, start_response)
    return django_application(environ, start_response)
