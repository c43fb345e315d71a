"""Option files as MariaDB's own reader (my_print_defaults) reads them: tasks/engines/mysql.py's client
file with every nasty character, and a backup's client options that include the user's own file on the host
(the local transport)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from doit_stages.config import Host
from doit_stages.engines.mysql import MySQL, option_file
from tests.lab.configs import NASTY, mysql_db


def test_option_file_quotes_every_nasty_character(monkeypatch, tmp_path):
    """Read back by MariaDB's own option-file reader (my_print_defaults), as mysqldump would read it."""
    reader = shutil.which("my_print_defaults")
    assert reader, "my_print_defaults (MariaDB's client) is missing: ./scripts/test installs it"
    password = NASTY.format(marker=tmp_path / "pwned") + "\\n\\\\ end\\"
    monkeypatch.setenv("DST_PURE_PW", password)
    cnf = tmp_path / "client.cnf"
    cnf.write_bytes(option_file(mysql_db(user="o'neil \"x\" #1")))
    out = subprocess.run([reader, f"--defaults-file={cnf}", "client"], capture_output=True, text=True, check=True)
    opts = dict(line[2:].split("=", 1) for line in out.stdout.splitlines())
    assert opts == {"host": "db.example", "port": "3307", "user": "o'neil \"x\" #1", "password": password}
    assert not (tmp_path / "pwned").exists()


# -- option_file: the user's own file on the host, included, never read by the tool --------------------------
def test_client_options_include_the_users_file_and_stages_ini_wins(tmp_path, monkeypatch):
    from doit_stages.layout import Layout
    from doit_stages.transport import LocalTransport

    monkeypatch.setenv("HOME", str(tmp_path))
    user_file = tmp_path / ".my.cnf"
    user_file.write_text('[client]\nuser=someone-else\npassword="p w;#\\\\x"\n')
    user_file.chmod(0o600)
    db = mysql_db(password_env="", option_file="~/.my.cnf")
    with MySQL().client_options(LocalTransport(Host("local")), Layout(str(tmp_path / "srv")), db) as cnf:
        ours = Path(cnf).read_text()
        out = subprocess.run(["my_print_defaults", f"--defaults-file={cnf}", "client"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert "p w" not in ours and ours.startswith(f"!include {user_file}\n")
    opts = dict(line[2:].split("=", 1) for line in out)        # the last of each option wins, as in mysql
    assert opts == {"user": "blog", "password": "p w;#\\x", "host": "db.example", "port": "3307"}
    assert not Path(cnf).exists()


def test_client_options_with_a_missing_option_file(tmp_path):
    from doit_stages.errors import StepError
    from doit_stages.layout import Layout
    from doit_stages.transport import LocalTransport

    db = mysql_db(password_env="", option_file=str(tmp_path / "nope.cnf"))
    with pytest.raises(StepError) as info:
        with MySQL().client_options(LocalTransport(Host("local")), Layout(str(tmp_path / "srv")), db):
            pass
    assert str(info.value) == (f"[database:prod] option_file {tmp_path}/nope.cnf: no readable file on local; "
                               "put the MySQL option file there (mode 0600) or fix option_file")
