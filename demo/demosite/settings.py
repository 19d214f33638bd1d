"""Settings for the ferrule demo site: a development setup, not a deployment template."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Development only: this key is public.
SECRET_KEY = "ferrule-demo-not-a-secret"
DEBUG = True
# With DEBUG on, an empty list admits localhost, 127.0.0.1 and [::1].
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "ferrule",
    "django.contrib.staticfiles",
    "guestbook",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demosite.urls"
WSGI_APPLICATION = "demosite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

STATIC_URL = "/static/"
