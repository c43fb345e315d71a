# Runs on the host, inside the release, with the stage's environment, as a file (steps/hostfiles.py):
# <python> migrate_runner.py <seconds> <manage.py> migrate [migrate options...]
#
# The project's manage.py, run as `python manage.py migrate ...` runs it, with one addition: every MySQL or
# MariaDB connection Django opens first bounds its lock waits to <seconds> (lock_wait_timeout: the metadata
# lock each DDL statement needs, which one open transaction on the table holds up while every later query
# on that table queues behind the waiting ALTER; innodb_lock_wait_timeout: row locks). The servers'
# defaults are a day (MariaDB) and a year (MySQL). When a statement gives up waiting (error 1205), it
# prints one line "@@doit-stages {json}": that statement, how many statements that may change the database
# succeeded before it (and how many of them since the last migration was recorded as applied: the blocked
# migration's own, which a second attempt would run again), and what the server shows of the other
# connections (of their queries only the first word: a query's text may hold data), and exits 75; the
# deploying machine tries again or stops.
#
# On PostgreSQL (django.db.backends.postgresql) each connection runs `SET lock_timeout = '<seconds>s'` (every
# lock a statement waits for: ALTER TABLE's ACCESS EXCLUSIVE behind a transaction that read the table, and
# every query queued behind that ALTER), and a statement that gives up fails with SQLSTATE 55P03
# (lock_not_available). Django runs each migration in a transaction there (unless it says atomic = False):
# the blocked migration's changes are rolled back with it, so only what ran outside a transaction counts as
# unrecorded; the report names the sessions holding locks in the database (pg_locks, pg_stat_activity).
# Standard library and Django only: this is the app's interpreter.
import json
import os
import runpy
import sys

MARK = "@@doit-stages "
LOCK_WAIT_TIMEOUT = 1205
LOCK_NOT_AVAILABLE = "55P03"      # PostgreSQL's SQLSTATE when lock_timeout ran out
APP_NAME = "doit-stages migrate"
EXIT_LOCKED = 75
PROCESSES = ("SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, SUBSTRING_INDEX(TRIM(COALESCE(INFO, '')), ' ', 1) "
             "FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()")
# both need the PROCESS privilege (the app's user seldom has it); without it only its own connections show
TRANSACTIONS = ("SELECT trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, trx_started, NOW()) "
                "FROM information_schema.INNODB_TRX")
METADATA_LOCKS = (
    # MariaDB with the metadata_lock_info plugin
    "SELECT THREAD_ID, TABLE_SCHEMA, TABLE_NAME FROM information_schema.METADATA_LOCK_INFO",
    # MySQL 8 (performance_schema on by default there)
    "SELECT t.PROCESSLIST_ID, m.OBJECT_SCHEMA, m.OBJECT_NAME FROM performance_schema.metadata_locks m "
    "JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID "
    "WHERE m.LOCK_STATUS = 'GRANTED' AND m.OBJECT_TYPE = 'TABLE'",
)

seconds, manage, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
failed = {}
# statements that read or set up a session: anything else that succeeded may have changed the database
READS = ("SELECT", "SHOW", "SET", "DESCRIBE", "DESC", "EXPLAIN", "SAVEPOINT", "RELEASE", "ROLLBACK")
changes = [0, 0]   # statements that may have changed the database: in all, and since a migration was recorded
# PostgreSQL: changes made in the open transaction (a migration's atomic block), counted once it commits and
# dropped when it rolls back (bound: the connection's commit and rollback); whether that transaction recorded
# its migration; whether the failed statement ran in such a transaction
pending = {"changes": 0, "recorded": False, "failed_in_transaction": False}
PG_SESSIONS = (
    "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(client_addr::text, 'local'), "
    "coalesce(state, ''), extract(epoch FROM now() - state_change)::int, "
    "extract(epoch FROM now() - xact_start)::int, split_part(trim(coalesce(query, '')), ' ', 1) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
# granted locks on tables of this database, by other sessions (every user may read pg_locks)
PG_LOCKS = ("SELECT l.pid, c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.granted AND l.pid <> pg_backend_pid() "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def remember(execute, sql, params, many, context):
    """Django's execute wrapper: the statement that failed, to name the table it waited for; and how many
    statements that may change the database succeeded (none: a restore would only lose later writes)."""
    connection = context.get("connection") if isinstance(context, dict) else None
    transactional = connection is not None and connection.vendor == "postgresql"
    in_transaction = transactional and connection.in_atomic_block
    try:
        result = execute(sql, params, many, context)
    except Exception:
        failed["sql"] = str(sql)[:2000]
        pending["failed_in_transaction"] = in_transaction
        if in_transaction:   # the transaction's changes go with it (Django's atomic rolls it back)
            pending.update(changes=0, recorded=False)
        raise
    words = str(sql).lstrip(" (\n\t").split(None, 1)
    if not words or words[0].upper() not in READS:
        # Django records a migration (INSERT INTO django_migrations) once all its operations ran
        recorded = words[0].upper() == "INSERT" and "django_migrations" in str(sql)[:200]
        if in_transaction:
            pending["changes"] += 1
            pending["recorded"] = pending["recorded"] or recorded
        else:
            changes[0] += 1
            changes[1] = 0 if recorded else changes[1] + 1
    return result


def bound(sender, connection, **kwargs):
    if connection.vendor == "mysql":
        with connection.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = %s", [seconds])
            cur.execute("SET SESSION innodb_lock_wait_timeout = %s", [seconds])
    elif connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SET lock_timeout = '%ds'" % seconds)
            cur.execute("SET application_name = '%s'" % APP_NAME)
        # a transaction's changes count once it commits (Django's outermost atomic block calls these; one
        # migration's commit comes with no statement between it and the next migration's first)
        if not getattr(connection, "_dst_counted", False):
            connection._dst_counted = True
            commit, rollback = connection.commit, connection.rollback

            def committed():
                commit()
                settle()

            def rolled_back():
                rollback()
                pending.update(changes=0, recorded=False)
            connection.commit, connection.rollback = committed, rolled_back
    else:
        return
    if remember not in connection.execute_wrappers:
        connection.execute_wrappers.append(remember)


def settle():
    """The pending transaction committed: its changes count (and, when it recorded its migration, none
    since a migration was recorded)."""
    if pending["changes"]:
        changes[0] += pending["changes"]
        changes[1] = 0 if pending["recorded"] else changes[1] + pending["changes"]
    pending.update(changes=0, recorded=False)


def say_failed():
    """A failure that is no lock wait: how many statements that may change the database succeeded (and
    stay: a failed transaction's were rolled back), on a line of its own."""
    sys.stdout.write("\n" + MARK + json.dumps({"event": "failed", "changes": changes[0]}) + "\n")
    sys.stdout.flush()


def timed_out(exc):
    for _ in range(10):  # the driver's error is the cause (or context) of Django's
        if exc is None:
            return False
        if getattr(exc, "errno", None) == LOCK_WAIT_TIMEOUT or (exc.args and exc.args[0] == LOCK_WAIT_TIMEOUT):
            return True
        if LOCK_NOT_AVAILABLE in (getattr(exc, "sqlstate", None), getattr(exc, "pgcode", None)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def alias():
    for i, a in enumerate(args):
        if a.startswith("--database="):
            return a.split("=", 1)[1]
        if a == "--database" and i + 1 < len(args):
            return args[i + 1]
    return "default"


def rows(cur, sql):
    try:
        cur.execute(sql)
        return [list(r) for r in cur.fetchall()]
    except Exception:  # no privilege, no such table: that source says nothing
        return None


def report(exc):
    from django.db import connections
    connection = connections[alias()]
    try:
        found = inspect(connection)
    except Exception:  # the session the migration used is unusable: ask in a fresh one
        connection.close()
        found = inspect(connection)
    # on a line of its own: Django's "  Applying app.0005_x..." has no line end yet
    sys.stdout.write("\n" + MARK + json.dumps(found, default=str) + "\n")
    sys.stdout.flush()
    sys.stderr.write("lock wait timeout (%s s): %s\n" % (seconds, exc))


def inspect(connection):
    sql = failed.get("sql")  # read first: the queries below go through the same wrapper
    if connection.vendor == "postgresql":
        return inspect_postgresql(connection, sql)
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID(), DATABASE(), CURRENT_USER()")
        me, db, user = cur.fetchone()
        return {"event": "lock_timeout", "seconds": seconds, "sql": sql, "changes": changes[0],
                "unrecorded": changes[1], "me": me, "db": db, "user": user, "processes": rows(cur, PROCESSES),
                "transactions": rows(cur, TRANSACTIONS),
                "metadata_locks": next((r for r in (rows(cur, q) for q in METADATA_LOCKS) if r), None)}


def inspect_postgresql(connection, sql):
    """The sessions of the database and the table locks they hold. A failed statement in a transaction
    rolled its changes back with it: only those made outside one (atomic = False) stay unrecorded."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(), current_database(), current_user")
        me, db, user = cur.fetchone()
        return {"event": "lock_timeout", "server": "postgresql", "seconds": seconds, "sql": sql,
                "changes": changes[0], "unrecorded": 0 if pending["failed_in_transaction"] else changes[1],
                "transactional": pending["failed_in_transaction"], "me": me, "db": db, "user": user,
                "sessions": rows(cur, PG_SESSIONS), "locks": rows(cur, PG_LOCKS)}


def main():
    try:
        from django.db.backends.signals import connection_created
    except ImportError:
        connection_created = None  # not Django after all: run it as it is
    if connection_created is not None:
        connection_created.connect(bound)
    sys.argv = [manage, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(manage)))
    try:
        runpy.run_path(manage, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            say_failed()
        raise
    except BaseException as exc:
        if not timed_out(exc):
            say_failed()
            raise
        report(exc)
        sys.exit(EXIT_LOCKED)


main()
