# db.py SQLITE_COUNTS_PY: run as `python3 -c SQLITE_COUNTS_PY <database file>` on the host; prints
# "table<TAB>count" lines (db.parse_row_counts).
import sqlite3
import sys

con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                     "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
for n in names:
    print(n + "\t" + str(con.execute('SELECT COUNT(*) FROM "%s"' % n.replace('"', '""')).fetchone()[0]))
