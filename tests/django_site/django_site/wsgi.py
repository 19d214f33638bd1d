"""WSGI_APPLICATION for the test project: Django, plus one probe path answered outside it."""

import os
import threading

from django.core.wsgi import get_wsgi_application

from django_site import probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

django_application = get_wsgi_application()


def application(environ, start_response):
    # The thread the server called the application on, for the async views to compare with.
    environ["django_site.wsgi_thread"] = threading.get_ident()
    if environ.get("PATH_INFO") == "/_probe/db-connections":
        return probes.db_connections(environ, start_response)
    return django_application(environ, start_response)
