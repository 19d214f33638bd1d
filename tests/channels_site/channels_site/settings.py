"""Settings of a Django project built as the Channels tutorial builds one: a chat app whose
rooms are WebSockets, under `ASGI_APPLICATION`.

The channel layer is Channels' in-memory one, or Redis (channels_redis) when
CHANNELS_SITE_REDIS_URL gives a server: the one a project with several worker processes
needs. The data directory (the migrated SQLite database: sessions and users) comes from
CHANNELS_SITE_DATA_DIR.
"""

import os
import tempfile
from pathlib import Path

DATA_DIR = Path(os.environ.get("CHANNELS_SITE_DATA_DIR", tempfile.gettempdir()))

SECRET_KEY = "ferrule-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "ferrule",
    "channels",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "channels_site.urls"
ASGI_APPLICATION = "channels_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "channels_site.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

if os.environ.get("CHANNELS_SITE_REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["CHANNELS_SITE_REDIS_URL"]]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The consumers log their connects and disconnects to stderr, where the tests read them, and
# so do Django's view errors. The root logger is left alone so ferrule installs its own.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "ERROR"},
        "chat": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
