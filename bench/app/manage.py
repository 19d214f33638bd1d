#!/usr/bin/env python
"""Django's command-line utility for the benchmark project (run.py does not need it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
