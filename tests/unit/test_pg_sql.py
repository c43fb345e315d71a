"""tasks/engines/pg_sql.py and pg_sqlcheck.py on plain inputs: the URL the app gets (read back by the sample
app's own parser), the password file line, the tools' environment, the parsers of psql's answers, the
refused-login hints, and the unsafe operations in Django 5.2's sqlmigrate SQL for PostgreSQL 15
(tests/fixtures/pg, made by its make_fixtures.py). The SQL itself runs against the real server in
tests/integration/test_pg_lab.py."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from doit_stages.config import ConfigError, Database
from doit_stages.engines import pg_sql
from doit_stages.engines.pg_sqlcheck import Column, PgPlanCheck, columns_from_rows, split_sql
from tests.lab.common import NASTY_PASSWORD

FIX = Path(__file__).parents[1] / "fixtures" / "pg"
DBURL = Path(__file__).resolve().parents[2] / "examples" / "blog" / "blog" / "dburl.py"
_spec = importlib.util.spec_from_file_location("blog_dburl", DBURL)
dburl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dburl)
PASSWORD = NASTY_PASSWORD + ":/@%?&\\:"


def pg(**kw) -> Database:
    base = dict(name="prod", engine="postgresql", dbname="blog_prod", user="blog", host="db1.internal", port=5432,
                password_env="PW", secret=PASSWORD)
    return Database(**{**base, **kw})


PASSFILE = dict(password_env="", secret="", passfile="~/.pgpass")


# -- what the app and the tools get --------------------------------------------------------------------
def test_the_url_percent_encodes_and_the_app_reads_it_back():
    db = pg(user="bl@g+1", dbname="blog-$prod", sslmode="verify-full")
    url = pg_sql.database_url(db)
    assert url.startswith("postgres://bl%40g%2B1:") and url.endswith("@db1.internal:5432/blog-%24prod"
                                                                     "?sslmode=verify-full")
    assert NASTY_PASSWORD not in url
    assert dburl.parse(url) == {"ENGINE": "django.db.backends.postgresql", "NAME": "blog-$prod", "USER": "bl@g+1",
                                "PASSWORD": PASSWORD, "HOST": "db1.internal", "PORT": "5432",
                                "OPTIONS": {"sslmode": "verify-full"}}


def test_with_passfile_the_url_has_no_password_and_pgpassfile_names_it_on_the_host():
    db = pg(**PASSFILE)
    assert pg_sql.database_url(db) == "postgres://blog@db1.internal:5432/blog_prod"
    assert dburl.parse("postgresql://blog@db1.internal/blog_prod")["PASSWORD"] == ""
    assert dburl.parse("postgresql://blog@db1.internal/blog_prod")["PORT"] == "5432"
    assert pg_sql.pgpassfile_env(db, "/home/deploy/") == {"PGPASSFILE": "/home/deploy/.pgpass"}
    assert pg_sql.pgpassfile_env(pg(**{**PASSFILE, "passfile": "/etc/blog/pgpass"}), "/x") == \
        {"PGPASSFILE": "/etc/blog/pgpass"}
    assert pg_sql.pgpassfile_env(pg(), "/home/deploy") == {}


def test_an_ipv6_host_is_bracketed_in_the_url():
    url = pg_sql.database_url(pg(host="::1"))
    assert "@[::1]:5432/" in url and dburl.parse(url)["HOST"] == "::1"


@pytest.mark.parametrize("url", ["postgres://u@h/n?sslmode=require&options=-c%20x", "postgres://u@/n",
                                 "postgres://u@h:99999/n"])
def test_the_app_refuses_what_it_does_not_understand(url):
    with pytest.raises(ValueError, match="postgres DATABASE_URL"):
        dburl.parse(url)


def test_the_pgpass_line_escapes_backslash_and_colon():
    line = pg_sql.pgpass_line(pg(host="::1", secret="a:b\\c"))
    assert line == "\\:\\:1:5432:blog_prod:blog:a\\:b\\\\c\n"


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere"])
def test_a_password_with_a_line_break_is_refused_in_one_line(bad):
    with pytest.raises(ConfigError) as info:
        pg_sql.pgpass_line(pg(secret=bad))
    msg = str(info.value)
    assert msg.startswith("[database:prod] password_env: the password in $PW holds a line break") and "\n" not in msg
    assert bad not in msg


def test_the_tools_environment_holds_names_and_paths_never_the_password():
    env = pg_sql.client_env(pg(sslmode="require"), "/tmp/dst.pgpass")
    assert env == {"PGHOST": "db1.internal", "PGPORT": "5432", "PGUSER": "blog", "PGDATABASE": "blog_prod",
                   "PGPASSFILE": "/tmp/dst.pgpass", "PGAPPNAME": "doit-stages", "PGCONNECT_TIMEOUT": "10",
                   "PGSSLMODE": "require"}
    assert "PGSSLMODE" not in pg_sql.client_env(pg(), "/p")
    argv = pg_sql.env_argv(env, pg_sql.psql_argv("SELECT 1"))
    assert argv[:2] == ["env", "PGHOST=db1.internal"] and argv[-2:] == ["-c", "SELECT 1"]
    assert "psql" in argv and not any(PASSWORD in a or "PGPASSWORD" in a for a in argv)
    with pytest.raises(ValueError):
        pg_sql.env_argv({"PGHOST": "a\nb"}, ["psql"])


# -- the parsers of psql's answers ---------------------------------------------------------------------
def test_row_counts():
    assert pg_sql.parse_row_counts("extra.Odd name\t2\nposts_post\t300000\n\n") == \
        {"extra.Odd name": 2, "posts_post": 300000}
    assert pg_sql.parse_row_counts("") == {}
    for bad in ("posts_post\n", "posts_post\tmany\n", "\t3\n"):
        with pytest.raises(ValueError):
            pg_sql.parse_row_counts(bad)


def test_copy_tags_name_each_table_as_the_row_counts_do():
    # what psql printed of a real restore (ECHO queries, tags on): other queries, results and tags between
    out = ("SET statement_timeout = 0;\nSET\nSELECT pg_catalog.set_config('search_path', '', false);\n"
           " set_config \n------------\n \n(1 row)\n\nCREATE TABLE public.\"b c\" (\n    z integer\n);\n"
           "CREATE TABLE\nCOPY public.\"b c\" (z) FROM stdin;\nCOPY 2\n"
           "COPY public.posts_post (id, title, \"we\"\"ird (col)\") FROM stdin;\nCOPY 1000000\n"
           "COPY \"Sales\".\"line\nbreak\" FROM stdin;\nCOPY 0\nCOPY audit.log (id) FROM stdin;\nCOPY 7\n"
           "SELECT pg_catalog.setval('public.posts_post_id_seq', 1000000, true);\nCOMMIT\n")
    assert pg_sql.parse_copy_tags(out) == {"b c": 2, "posts_post": 1_000_000, "Sales.line\nbreak": 0, "audit.log": 7}


def test_a_copy_without_its_tag_is_left_out_and_a_tag_alone_counts_nothing():
    # a COPY that failed has no tag (ON_ERROR_STOP ends psql): the table is missing, so the caller counts
    out = "COPY public.a (x) FROM stdin;\nERROR: x\nCOPY 5\nCOPY public.b (y) FROM stdin;\nCOPY 3\n"
    assert pg_sql.parse_copy_tags(out) == {"b": 3}
    assert pg_sql.parse_copy_tags("COPY 3\n") == {}


def test_server_identity():
    assert pg_sql.parse_server_identity("7716151930964375709\t127.0.0.1\t5432\t16388\tblog_prod\n") == \
        (7716151930964375709, "127.0.0.1", 5432, 16388, "blog_prod")
    assert pg_sql.parse_server_identity("1\t\t0\t5\tb\n")[1:3] == ("", 0)     # a Unix socket: no address
    for bad in ("", "1\t2\n", "x\ta\t1\t2\tb\n", "1\ta\t1\t2\tb\n1\ta\t1\t2\tb\n"):
        with pytest.raises(ValueError):
            pg_sql.parse_server_identity(bad)


def test_blockers_in_one_line():
    out = ("4242\tblog\tgunicorn\tidle in transaction\t2026-12-06T11:38:41Z\tposts_post\tSELECT * FROM posts_post\n"
           "77\t\t\t\t\t\t\n")
    assert pg_sql.describe_blockers(out) == (
        "pid 4242 (user blog, application 'gunicorn', idle in transaction, query started 2026-12-06T11:38:41Z) "
        "holding posts_post: SELECT * FROM posts_post; pid 77 (user ?, state unknown)")
    assert pg_sql.describe_blockers("") == ""


def test_blockers_sql_quotes_the_table_names():
    sql = pg_sql.blockers_sql(["posts_post", "it's"])
    assert "ARRAY['posts_post', 'it''s']::text[]" in sql
    assert "ARRAY[]::text[]" in pg_sql.BLOCKERS and "pg_blocking_pids" in sql
    with pytest.raises(ValueError):
        pg_sql.blockers_sql(["a\0b"])


# -- refused logins ------------------------------------------------------------------------------------
LIBPQ = 'psql: error: connection to server at "db1.internal" (10.0.0.5), port 5432 failed: FATAL:  '


@pytest.mark.parametrize("text, start, key", [
    (LIBPQ + 'password authentication failed for user "blog"', "refused the password of role blog: the "
     "password comes from $PW ([database:prod] password_env)", "user"),
    (LIBPQ + 'no pg_hba.conf entry for host "10.0.0.9", user "blog", database "blog_prod", no encryption',
     "has no pg_hba.conf entry for host 10.0.0.9, role blog, database blog_prod", "sslmode"),
    (LIBPQ + 'database "blog_prod" does not exist', "has no database blog_prod: create it owned by blog", "name"),
    (LIBPQ + 'role "blog" does not exist', "has no role blog", "user"),
    (LIBPQ + 'permission denied for database "blog_prod"\nDETAIL:  User does not have CONNECT privilege.',
     "refused role blog the database blog_prod (permission denied)", "name or user"),
])
def test_refusals_become_one_line_naming_the_key(text, start, key):
    hint = pg_sql.access_denied(pg(), text)
    assert hint.startswith(f"[database:prod] db1.internal:5432 {start}"), hint
    assert hint.endswith(key) and "\n" not in hint


def test_a_refused_password_with_passfile_names_the_passfile_and_its_line():
    hint = pg_sql.access_denied(pg(**PASSFILE), "fe_sendauth: no password supplied")
    assert "[database:prod] passfile = ~/.pgpass" in hint and "db1.internal:5432:blog_prod:blog:<password>" in hint
    assert pg_sql.access_denied(pg(), "could not translate host name") is None


# -- the unsafe operations of sqlmigrate's SQL ---------------------------------------------------------
EXPECTED = {
    "0004_post_subtitle": [],
    "0005_post_title_text": [],                 # varchar -> text: no rewrite on PostgreSQL, str either way
    "0006_remove_post_subtitle": [("drop_column", "posts_post", "subtitle")],
    "0007_post_views": [],                      # db_default: a database default, no rewrite (PG 11+)
    "0008_post_rank": [("not_null_without_default", "posts_post", "rank")],
    "0009_rename_body": [("rename_column", "posts_post", "body")],
    "0010_author_unique": [("add_unique", "posts_comment", "author"),
                           ("index_without_concurrently", "posts_comment", "author")],   # the _like index
    "0011_slug_wider": [],
    "0012_tag": [],
    "0013_rename_tag": [("rename_table", "posts_tag", None)],
    "0014_delete_label": [("drop_table", "posts_label", None)],
    "0015_summary_not_null": [("set_not_null", "posts_post", "summary"),
                              ("not_null_without_default", "posts_post", "summary")],
    "0016_comment_parent": [("add_foreign_key_validating", "posts_comment", "parent_id"),
                            ("index_without_concurrently", "posts_comment", "parent_id")],
    "0017_post_created_index": [("index_without_concurrently", "posts_post", "created")],
    "0018_post_title_index_concurrently": [],
    "0019_post_views_bigint": [("alter_type", "posts_post", "views")],
    "0020_post_token": [("volatile_default", "posts_post", "token")],
    "0021_post_published": [],                  # STATEMENT_TIMESTAMP() is stable: no rewrite
}


def before(name: str):
    return columns_from_rows(json.loads((FIX / f"{name}.before.json").read_text()))


def sql(name: str) -> str:
    return (FIX / f"{name}.sql").read_text()


def kinds(found: dict) -> list[tuple]:
    return [(u["kind"], u["table"], u["column"]) for u in found["unsafe"]]


def test_every_fixture_is_judged():
    assert sorted(p.name[:-4] for p in FIX.glob("0*.sql")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_migration_alone_is_judged_from_its_sql(name):
    found = PgPlanCheck(before(name)).check([sql(name)])
    assert kinds(found) == EXPECTED[name]
    assert all(u["why"] and set(u) == {"kind", "table", "column", "why"} for u in found["unsafe"])
    assert found["tables"]


def test_the_pending_plan_ignores_what_it_added_itself():
    """One plan from 0004: columns and tables the plan added are not the live release's (as sqlcheck.py)."""
    plan = PgPlanCheck(before("0004_post_subtitle"))
    found = {name: kinds(plan.check([sql(name)])) for name in EXPECTED}
    assert found["0006_remove_post_subtitle"] == [] and found["0013_rename_tag"] == []
    assert found["0014_delete_label"] == [] and found["0019_post_views_bigint"] == []
    assert found["0015_summary_not_null"] == [("set_not_null", "posts_post", "summary"),   # a scan under lock
                                              ("not_null_without_default", "posts_post", "summary")]
    assert found["0017_post_created_index"] == [("index_without_concurrently", "posts_post", "created")]


@pytest.mark.parametrize("statement, expected", [
    ('ALTER TABLE "t" ADD CONSTRAINT "fk" FOREIGN KEY ("a_id") REFERENCES "a" ("id") NOT VALID', []),
    ('ALTER TABLE "t" ADD CONSTRAINT "fk" FOREIGN KEY ("a_id") REFERENCES "a" ("id") DEFERRABLE INITIALLY DEFERRED',
     [("add_foreign_key_validating", "t", "a_id")]),
    ('CREATE UNIQUE INDEX CONCURRENTLY "u" ON "t" ("a")', [("add_unique", "t", "a")]),
    ('CREATE INDEX "i" ON public."t" USING gin ("a")', [("index_without_concurrently", "t", "a")]),
    ('ALTER TABLE "t" ALTER COLUMN "a" TYPE varchar(20) USING "a"::varchar(20)', [("alter_type", "t", "a")]),
    ('ALTER TABLE "t" ALTER COLUMN "a" TYPE varchar(80)', []),
    ('ALTER TABLE "t" ALTER COLUMN "a" TYPE text', []),
    ('ALTER TABLE "t" ADD COLUMN "x" double precision DEFAULT (random()) NULL', [("volatile_default", "t", "x")]),
    ('ALTER TABLE "t" DROP COLUMN "a" CASCADE, DROP CONSTRAINT "c"', [("drop_column", "t", "a")]),
    ('ALTER TABLE "t" RENAME TO "u"', [("rename_table", "t", None)]),
    ("DO $$BEGIN ALTER TABLE t DROP COLUMN a; END$$; SELECT ';'", []),
])
def test_single_statements(statement, expected):
    schema = {"t": {"a": Column("varchar(40)", True)}}
    assert kinds(PgPlanCheck(schema).check([statement])) == expected


def test_a_table_created_in_the_plan_takes_any_index():
    plan = PgPlanCheck({})
    plan.check(['CREATE TABLE "n" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "a" int)'])
    assert kinds(plan.check(['CREATE INDEX "i" ON "n" ("a")', 'ALTER TABLE "n" ALTER COLUMN "a" SET NOT NULL',
                             'ALTER TABLE "n" ADD CONSTRAINT "f" FOREIGN KEY ("a") REFERENCES "t" ("id")'])) == []
    assert kinds(plan.check(['CREATE INDEX "i" ON "t" ("a")'])) == [("index_without_concurrently", "t", "a")]


def test_split_sql_keeps_quotes_and_dollar_bodies_whole():
    assert split_sql("BEGIN;\n-- a comment; with a semicolon\nSELECT 'a;b', \"c;d\";\nDO $f$ x; y $f$;\nCOMMIT;") \
        == ["SELECT 'a;b', \"c;d\"", "DO $f$ x; y $f$"]
    assert split_sql('"a" int, "b" numeric(10, 2) DEFAULT 0', ",") == ['"a" int', '"b" numeric(10, 2) DEFAULT 0']


def test_server_identity_of_a_database_by_name_quotes_it():
    sql = pg_sql.server_identity_sql("it's")
    assert "datname = 'it''s'), 0),\n 'it''s'" in sql and "pg_control_system()" in sql
    assert pg_sql.parse_server_identity("77\t127.0.0.1\t5432\t0\tnew_db\n") == (77, "127.0.0.1", 5432, 0, "new_db")
