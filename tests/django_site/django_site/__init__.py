"""A small Django project used only by tests/test_django.py."""
