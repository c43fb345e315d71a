# Runs on the host, inside the release, with the stage's environment, as a file (steps/hostfiles.py) beside
# rehearsal_probe.py and rehearsal_probe_pg.py:
# <python> rehearsal_runner.py rehearse|rehearse-here|applied <manage.py> migrate [options...]
# ("applied": only step 1's lists of applied and pending migrations, for the guard on production)
#
# 1. django.setup(); the pending plan; each pending migration's SQL as `manage.py sqlmigrate` gives it
#    (collected BEFORE anything is applied); one line "@@doit-stages <json>" with all of it. With
#    "rehearse-here" (a database with option_file or passfile, whose password the deploying machine never
#    sees) the line also holds the copy's schema (information_schema.COLUMNS, or pg_attribute), read
#    here. A migration whose SQL cannot be collected before the ones before it are applied (the schema
#    editor reads the live database, MySQL's for foreign keys and index names, PostgreSQL's for the
#    constraints an AlterField drops: a table an earlier pending migration creates is not there yet) has
#    "sql": null, why in "sql_error", and the tables its operations name; its SQL is then the one migrate
#    executes (step 3).
# 2. Waits on stdin for "go" (the deploying machine started its own write probe first), or for
#    "probe <json>" (rehearse-here: this process reads the named tables' sizes and runs the write probe
#    itself, each session a new connection of the app's own driver and settings); "stop": exit 0 (only the
#    plan was wanted); anything else (the deployer went away): exit 3, nothing applied.
# 3. Django's own `migrate` at verbosity 2, its output flushed at every write, so that the deploying
#    machine sees "  Applying app.0002_x..." the moment a migration starts and " OK (1.234s)" when it ends.
#    The last line ("done") carries this process's probe, if any: sizes, probe writes and the migrations'
#    spans, all on this host's monotonic clock, as data; and the SQL executed by each migration whose SQL
#    step 1 could not collect (from the schema editor's own log, django.db.backends.schema).
# Standard library and Django only: this is the app's interpreter, not the tool's.
import contextlib
import json
import logging
import os
import re
import sys
import time

# its neighbour, also when an interpreter script (zc.recipe.egg's bin/py) exec()s this file: then sys.path
# holds the eggs, not this file's directory; taken out again, so the app imports as it always does
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import rehearsal_probe
    import rehearsal_probe_pg
finally:
    sys.path.remove(HERE)

# the copy's reads and the write probe, by the connection's vendor (sqlite has none)
PROBES = {"mysql": rehearsal_probe, "postgresql": rehearsal_probe_pg}

MARK = "@@doit-stages "
APPLYING = re.compile(r"  Applying (\S+?)\.\.\.")


class Relay:
    """stdout for call_command: every write goes out at once. Keeps each migration's span on this host's
    clock: [name, when Django said "Applying", when it said "OK"]."""

    def __init__(self):
        self.spans = []

    def write(self, text):
        now = time.monotonic()
        m = APPLYING.match(text)
        if m:
            self.spans.append([m.group(1), now, None])
        elif text.startswith(" OK") and self.spans and self.spans[-1][2] is None:
            self.spans[-1][2] = now
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


def operation_tables(state, migration):
    """The tables a migration's operations name, by their models in the state before it (what the probe
    may watch when its SQL is not known before it runs)."""
    out = set()
    for op in migration.operations:
        for attr in ("model_name", "name"):
            model = state.models.get((migration.app_label, str(getattr(op, attr, "") or "").lower()))
            if model is not None:
                out.add(model.options.get("db_table") or "%s_%s" % (migration.app_label, model.name_lower))
                break
    return sorted(out)


def collect(loader, connection, plan):
    """Each migration's SQL as sqlmigrate gives it, in one pass over the plan (one project state, carried
    forward, instead of rebuilding it from the first migration for each). One that cannot be collected
    yet (see 1. above) gets "sql": None and why; the state goes on from the loader's state after it."""
    out, state, keys = [], None, []
    for migration, backwards in plan:
        key = (migration.app_label, migration.name)
        keys.append(key)
        if state is None:
            state = loader.project_state(key, at_end=False)
        entry = {"name": "%s.%s" % key, "python_tables": python_tables(state, migration)}
        named = operation_tables(state, migration)
        try:
            with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                if backwards:
                    state = migration.unapply(state, editor, collect_sql=True)
                else:
                    state = migration.apply(state, editor, collect_sql=True)
            entry["sql"] = editor.collected_sql
        except Exception as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            entry.update(sql=None, sql_error="%s: %s" % (type(exc).__name__, why), operation_tables=named)
            # the plan so far, and its ancestors, applied (unapplied: the state before this one)
            state = loader.project_state(key, at_end=False) if backwards else loader.project_state(keys)
        out.append(entry)
    return out


class ExecutedSql(logging.Handler):
    """The statements the schema editor executes (it logs each to django.db.backends.schema before running
    it, as it collects it for sqlmigrate), kept for the migrations named, in sqlmigrate's form."""

    def __init__(self, relay, names, quote):
        super().__init__(logging.DEBUG)
        self.relay, self.quote, self.sql = relay, quote, {name: [] for name in names}

    def emit(self, record):
        spans = self.relay.spans
        name = spans[-1][0] if spans and spans[-1][2] is None else None
        sql, params = getattr(record, "sql", None), getattr(record, "params", None)
        if name not in self.sql or sql is None:
            return
        if params is not None:
            try:
                sql = sql % tuple(map(self.quote, params))
            except (TypeError, ValueError):
                pass
        self.sql[name].append(sql if sql.rstrip().endswith(";") else sql + ";")


@contextlib.contextmanager
def executed_sql(connection, relay, names):
    """ExecutedSql on the schema editor's logger while migrate runs (only when some SQL is wanted)."""
    if not names:
        yield None
        return
    log = logging.getLogger("django.db.backends.schema")
    saved = log.level, log.propagate
    handler = ExecutedSql(relay, names, connection.schema_editor(collect_sql=True).quote_value)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False   # the app's own logging configuration does not print every statement
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def app_connection(alias):
    """A new session of the app's own database connection (its driver, and its settings: with option_file
    the app read the password there), in autocommit, for the calling thread only."""
    from django.db import connections
    wrapper = connections.create_connection(alias)
    wrapper.ensure_connection()
    wrapper.set_autocommit(True)
    return wrapper.connection


def copy_schema(alias, probes):
    con = app_connection(alias)
    try:
        return probes.read_schema(con)
    finally:
        con.close()


def start_probe(alias, request, probes):
    """The named tables' sizes (before any migration) and a running write probe on them."""
    con = app_connection(alias)
    try:
        sizes = probes.table_sizes(con, request["tables"])
        targets = probes.probe_targets(con, request["tables"])
    finally:
        con.close()
    probe = probes.Probe(lambda: app_connection(alias), targets, request["interval"], request["timeout"])
    origin = time.monotonic()
    probe.start()
    return probe, sizes, origin


def probe_result(probe, sizes, origin, spans):
    """What the deploying machine attributes: times in seconds since the probe started, this host's clock."""
    def rel(x):
        return None if x is None else round(x - origin, 4)
    return {"sizes": sizes, "tables": [t[0] for t in probe.targets], "errors": probe.errors[:5],
            "writes": [[rel(a), rel(b)] for a, b in probe.writes],
            "spans": [[name, rel(a), rel(b)] for name, a, b in spans], "end": rel(time.monotonic())}


def main():
    mode, manage, args = sys.argv[1], sys.argv[2], sys.argv[4:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(manage)))
    import django
    django.setup()
    from django.db import DEFAULT_DB_ALIAS, connections

    alias = DEFAULT_DB_ALIAS
    for i, a in enumerate(args):
        if a.startswith("--database="):
            alias = a.split("=", 1)[1]
        elif a == "--database" and i + 1 < len(args):
            alias = args[i + 1]
    connection = connections[alias]
    if mode == "applied":
        from django.db.migrations.executor import MigrationExecutor
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        emit(event="plan", vendor=connection.vendor, migrations=[],
             applied=sorted("%s.%s" % key for key in executor.loader.applied_migrations),
             pending=["%s.%s" % (m.app_label, m.name) for m, backwards in plan if not backwards])
        return
    rehearse(connection, alias, args, mode == "rehearse-here")


def rehearse(connection, alias, args, here):
    """Steps 1-3 above; `here`: this process reads the copy and runs the probe (rehearse-here)."""
    from django.core.management import call_command
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    migrations = collect(executor.loader, connection, plan)
    applied = sorted("%s.%s" % key for key in executor.loader.applied_migrations)
    with connection.cursor() as cur:
        existing = connection.introspection.table_names(cur)
    probes = PROBES.get(connection.vendor)
    emit(event="plan", vendor=connection.vendor, applied=applied, migrations=migrations, tables=existing,
         sqlite=sqlite_tables(connection) if connection.vendor == "sqlite" and migrations else None,
         columns=copy_schema(alias, probes) if here and probes and migrations else None)
    answer = sys.stdin.readline().strip()
    if answer == "stop":
        return
    request = json.loads(answer[len("probe "):]) if answer.startswith("probe ") and here and probes else None
    if answer != "go" and request is None:
        sys.exit(3)
    relay, probe = Relay(), None
    unread = [m["name"] for m in migrations if m["sql"] is None]
    if request:
        probe, sizes, origin = start_probe(alias, request, probes)
    try:
        with executed_sql(connection, relay, unread) as executed:
            if migrations:
                call_command("migrate", *args, verbosity=2, interactive=False, no_color=True, stdout=relay)
    finally:
        if probe:
            probe.stop()
    emit(event="done", probe=probe_result(probe, sizes, origin, relay.spans) if probe else None,
         executed=executed.sql if executed else None)


main()
