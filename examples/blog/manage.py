#!/usr/bin/env python
import os
import sys


def main():
    # The deploy tool always sets DJANGO_SETTINGS_MODULE; the default is for a developer's checkout.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blog.settings.test")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
