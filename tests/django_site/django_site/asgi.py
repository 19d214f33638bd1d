"""ASGI_APPLICATION for the test project (with DJANGO_SITE_ASGI=1): Django's own handler,
plus the probe path answered outside it (as in wsgi.py)."""

import os

from django.core.asgi import get_asgi_application

from django_site import probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

django_application = get_asgi_application()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/_probe/db-connections":
        return await probes.asgi_db_connections(send)
    return await django_application(scope, receive, send)
