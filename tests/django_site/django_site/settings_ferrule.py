"""The test settings plus `FERRULE` (tests/test_config_file.py): the dict comes as JSON from the
DJANGO_SITE_FERRULE environment variable, so each test writes its own."""

import json
import os

from django_site.settings import *  # noqa: F403

FERRULE = json.loads(os.environ.get("DJANGO_SITE_FERRULE", "{}"))
