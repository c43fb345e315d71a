# Runs on the host, inside the release, with the stage's environment (python -c <this file's text>).
# argv: rehearse|applied <manage.py> migrate [migrate options...]
# ("applied": only step 1's list of applied migrations, for the guard on production)
#
# 1. django.setup(); the pending plan; each pending migration's SQL as `manage.py sqlmigrate` gives it
#    (collected BEFORE anything is applied); one line "@@doit-stages <json>" with all of it.
# 2. Waits for "go" on stdin (the deploying machine starts its write probe first); "stop": exit 0 (only the
#    plan was wanted); anything else (the deployer went away): exit 3, nothing applied.
# 3. Django's own `migrate` at verbosity 2, its output flushed at every write, so that the deploying
#    machine sees "  Applying app.0002_x..." the moment a migration starts and " OK (1.234s)" when it ends.
# Standard library and Django only: this is the app's interpreter, not the tool's.
import json
import os
import sys

MARK = "@@doit-stages "


class Relay:
    """stdout for call_command: every write goes out at once."""

    def write(self, text):
        sys.stdout.write(text)
        sys.stdout.flush()

    def flush(self):
        sys.stdout.flush()

    def isatty(self):
        return False


def emit(**event):
    sys.stdout.write(MARK + json.dumps(event) + "\n")
    sys.stdout.flush()


def sqlite_tables(connection):
    """sqlite only (the deploying machine reads MySQL itself): each table's CREATE statement and size."""
    out = {}
    with connection.cursor() as cur:
        cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        for name, sql in cur.fetchall():
            cur.execute('SELECT COUNT(*) FROM "%s"' % name.replace('"', '""'))
            rows = cur.fetchone()[0]
            try:
                cur.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = %s", [name])
                size = cur.fetchone()[0]
            except Exception:  # dbstat is not compiled into every sqlite
                size = None
            out[name] = {"sql": sql, "rows": rows, "bytes": size}
    return out


def python_tables(state, migration):
    """Tables a migration's RunPython (no SQL to read) may touch: those of its app at that point."""
    if all(op.reduces_to_sql for op in migration.operations):
        return []
    return sorted(m.options.get("db_table") or "%s_%s" % (app, name)
                  for (app, name), m in state.models.items() if app == migration.app_label)


def collect(loader, connection, plan):
    """Each migration's SQL as sqlmigrate gives it, in one pass over the plan (one project state, carried
    forward, instead of rebuilding it from the first migration for each)."""
    out, state = [], None
    for migration, backwards in plan:
        if state is None:
            state = loader.project_state((migration.app_label, migration.name), at_end=False)
        tables = python_tables(state, migration)
        with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
            if backwards:
                state = migration.unapply(state, editor, collect_sql=True)
            else:
                state = migration.apply(state, editor, collect_sql=True)
        out.append({"name": "%s.%s" % (migration.app_label, migration.name), "sql": editor.collected_sql,
                    "python_tables": tables})
    return out


def main():
    mode, manage, args = sys.argv[1], sys.argv[2], sys.argv[4:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(manage)))
    import django
    django.setup()
    from django.core.management import call_command
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    alias = DEFAULT_DB_ALIAS
    for i, a in enumerate(args):
        if a.startswith("--database="):
            alias = a.split("=", 1)[1]
        elif a == "--database" and i + 1 < len(args):
            alias = args[i + 1]
    connection = connections[alias]
    if mode == "applied":
        from django.db.migrations.recorder import MigrationRecorder
        emit(event="plan", vendor=connection.vendor, migrations=[],
             applied=sorted("%s.%s" % key for key in MigrationRecorder(connection).applied_migrations()))
        return
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    plan = executor.migration_plan(targets)
    migrations = collect(executor.loader, connection, plan)
    applied = sorted("%s.%s" % key for key in executor.loader.applied_migrations)
    with connection.cursor() as cur:
        existing = connection.introspection.table_names(cur)
    emit(event="plan", vendor=connection.vendor, applied=applied, migrations=migrations, tables=existing,
         sqlite=sqlite_tables(connection) if connection.vendor == "sqlite" and migrations else None)
    answer = sys.stdin.readline().strip()
    if answer == "stop":
        return
    if answer != "go":
        sys.exit(3)
    if migrations:
        call_command("migrate", *args, verbosity=2, interactive=False, no_color=True, stdout=Relay())
    emit(event="done")


main()
