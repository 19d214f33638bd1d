"""The Django app: add "ferrule" to INSTALLED_APPS to get `manage.py server`."""

from django.apps import AppConfig


class FerruleConfig(AppConfig):
    name = "ferrule"
    label = "ferrule"
    verbose_name = "ferrule"
