"""The bench app behind WhiteNoise, which serves BENCH_STATIC_DIR at /static/ (bench/static.py)."""

import os

from django.core.wsgi import get_wsgi_application
from whitenoise import WhiteNoise

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")

application = WhiteNoise(
    get_wsgi_application(), root=os.environ["BENCH_STATIC_DIR"], prefix="static/"
)
