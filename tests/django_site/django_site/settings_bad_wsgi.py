"""The test settings with a WSGI_APPLICATION that does not exist."""

from django_site.settings import *  # noqa: F403

WSGI_APPLICATION = "django_site.wsgi.no_such_application"
