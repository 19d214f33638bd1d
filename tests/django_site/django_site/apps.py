import os

from django.apps import AppConfig
from django.core import checks


class DjangoSiteConfig(AppConfig):
    name = "django_site"

    def ready(self) -> None:
        checks.register(forced_failure)


def forced_failure(app_configs, **kwargs):
    """A system check that fails when DJANGO_SITE_FAIL_CHECK is set."""
    if os.environ.get("DJANGO_SITE_FAIL_CHECK"):
        return [checks.Error("failing on purpose for a test", id="django_site.E001")]
    return []
