"""Settings for the test project. The data directory (SQLite file, file to serve) comes from
the DJANGO_SITE_DATA_DIR environment variable, so each test run has its own."""

import os
import tempfile
from pathlib import Path

DATA_DIR = Path(os.environ.get("DJANGO_SITE_DATA_DIR", tempfile.gettempdir()))

SECRET_KEY = "ferrule-tests-not-a-secret"
# The development-mode tests turn it on.
DEBUG = os.environ.get("DJANGO_SITE_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "ferrule",
    "django.contrib.sessions",
    "django_site",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "django_site.urls"
# The URL prefix tests set it; unset, Django's default (None) applies.
FORCE_SCRIPT_NAME = os.environ.get("DJANGO_SITE_FORCE_SCRIPT_NAME")
WSGI_APPLICATION = "django_site.wsgi.application"
# The ASGI tests serve the project through Django's ASGI handler: wrapped in the probe's ASGI
# function ("1"), or bare ("bare"), which ferrule recognises and serves sync views of without the
# event loop.
if os.environ.get("DJANGO_SITE_ASGI") == "1":
    ASGI_APPLICATION = "django_site.asgi.application"
elif os.environ.get("DJANGO_SITE_ASGI") == "bare":
    ASGI_APPLICATION = "django_site.asgi.django_application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "django_site.sqlite3",
        # Close at the end of every request: the tests check that the server makes that happen.
        # The ASGI tests keep them (as WSGI deployments do) to see one reused per thread.
        "CONN_MAX_AGE": int(os.environ.get("DJANGO_SITE_CONN_MAX_AGE", "0")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# With DEBUG off Django logs view errors nowhere by default; send them to stderr so the tests
# can find the traceback in the server's output. The root logger is left alone so ferrule
# installs its own handler.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
