"""The smallest Django project a deployment looks like: DEBUG off, `collectstatic` into
STATIC_ROOT, no database. Its static files can then only come from ferrule's core: Django
serves none with DEBUG off."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A smoke test's key: public.
SECRET_KEY = "ferrule-smoke-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "ferrule",
    "django.contrib.staticfiles",
    "smokesite",
]

ROOT_URLCONF = "smokesite.urls"
WSGI_APPLICATION = "smokesite.wsgi.application"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected"
