"""ASGI_APPLICATION for the test project (with DJANGO_SITE_ASGI=1): Django's own handler."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = get_asgi_application()
