#!/usr/bin/env python
"""The smoke project's manage.py: tests/smoke/smoke.py runs `manage.py server` on a copy."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smokesite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
