"""The test settings with static and media files (tests/test_django_static.py).

`django.contrib.staticfiles` is installed; its finders look in STATICFILES_DIRS
(tests/static_fixtures/django, one of them under the `vendor` prefix) and in this app's
`static/`. The environment sets the rest: DJANGO_SITE_STATIC_ROOT, DJANGO_SITE_MEDIA_ROOT,
DJANGO_SITE_STATIC_URL (default `static/`), DJANGO_SITE_DEBUG=1, and DJANGO_SITE_MANIFEST=1
for ManifestStaticFilesStorage.
"""

import os
from pathlib import Path

from django_site.settings import *  # noqa: F403
from django_site.settings import INSTALLED_APPS

FIXTURES = Path(__file__).resolve().parents[2] / "static_fixtures" / "django"

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]
DEBUG = os.environ.get("DJANGO_SITE_DEBUG") == "1"

STATIC_URL = os.environ.get("DJANGO_SITE_STATIC_URL", "static/")
STATIC_ROOT = os.environ.get("DJANGO_SITE_STATIC_ROOT") or None
STATICFILES_DIRS = [FIXTURES / "assets", ("vendor", FIXTURES / "vendor")]

MEDIA_URL = "media/"
MEDIA_ROOT = os.environ.get("DJANGO_SITE_MEDIA_ROOT", "")

if os.environ.get("DJANGO_SITE_MANIFEST") == "1":
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
