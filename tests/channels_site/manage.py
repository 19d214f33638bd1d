#!/usr/bin/env python
"""manage.py of the Django Channels project that tests/test_channels.py serves with
`manage.py server`."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channels_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
