"""Migrations and their rehearsal: Django's migrate (bounded lock waits), production's migration between
verified backups and its record, the rehearsal on a copy, its report and guard, and the SQL parsers."""
