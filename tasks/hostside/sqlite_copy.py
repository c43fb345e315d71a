# steps/database/backup.py SQLITE_COPY_PY: run as `python3 -c SQLITE_COPY_PY <database file> <copy>` on the host; a
# consistent copy by sqlite's backup API, checked by its integrity_check.
import os
import sqlite3
import sys

if not os.path.isfile(sys.argv[1]):
    sys.exit("sqlite database %s does not exist" % sys.argv[1])
src = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
dst = sqlite3.connect(sys.argv[2])
src.backup(dst)
ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
sys.exit(0 if ok == "ok" else "integrity_check: " + ok)
