"""The SSH transport's pure parts: the options of every ssh argv, and the project's ssh_fast_kex carried from
stages.ini to each ssh argv of a run (no host reached, no ssh started: tests/integration/test_transport.py
runs OpenSSH's own parser and the session protocol against a real local sh)."""
from __future__ import annotations

import pytest

from doit_stages.remote_shell import ssh_options


def test_ssh_options_check_host_keys_and_share_one_master(tmp_path):
    opts = ssh_options(tmp_path / "cfg")
    assert opts[:2] == ["-F", str(tmp_path / "cfg")]
    for want in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ControlMaster=auto", "ServerAliveInterval=10"):
        assert want in opts


@pytest.mark.parametrize("written, fast", [(None, False), ("no", False), ("yes", True)])
def test_the_projects_ssh_fast_kex_reaches_every_ssh_argv_of_a_run(tmp_path, monkeypatch, written, fast):
    """[project] ssh_fast_kex -> Session -> Connections -> SSHTransport -> the ssh argv (no host is reached:
    the session shell is replaced by a recorder of its argv)."""
    from doit_stages import transport
    from doit_stages.config import load_config, parse_host
    from doit_stages.session import Session
    from tests.unit.inifile import LOCAL_INI, in_section, write_ini

    seen = []

    class Recorder:
        session = None

        def __init__(self, argv, timeout):
            seen.append(argv)

        def close(self):
            pass

        let_go = close
    monkeypatch.setattr(transport, "RemoteShell", Recorder)
    text = LOCAL_INI if written is None else in_section(LOCAL_INI, "project", f"ssh_fast_kex = {written}")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ssh_config").write_text("Host *\n    User deploy\n")
    text = in_section(text, "project", "ssh_config = ssh_config")
    session = Session(load_config(write_ini(tmp_path, text)))
    session.connections.get(parse_host("ssh://deploy@web1:22"))
    assert ("KexAlgorithms=^curve25519-sha256,curve25519-sha256@libssh.org" in seen[0]) is fast
    assert not any("sntrup" in a or "mlkem" in a for a in seen[0])


@pytest.mark.parametrize("config, bounded", [
    ("Host *\n  User deploy\n", False),
    ("Host web*\n  ProxyJump bastion.example.com\n", True),
    ("Host *\n  proxycommand ssh -W %h:%p gate\n", True),
    ("Host *\n  ProxyCommand=ssh -W %h:%p gate\n", True),
    ("Host *\n  # ProxyJump bastion (not now)\n  User deploy\n", False),   # a comment sets nothing
    ("Host *\n  ProxyJump none\n", False),                               # `none`: no proxy
    ("Host *\n  Include INCLUDED/*.conf\n", True),                       # a file it includes does
    (None, False),                                   # no file: nothing names a proxy
])
def test_logins_keep_to_parallel_only_through_a_proxy(tmp_path, config, bounded):
    """A bastion (ProxyJump / ProxyCommand) drops new connections beyond its MaxStartups: then the run's
    logins keep to `parallel` at once (Session -> Connections); else every host's starts at once."""
    from doit_stages.config import load_config
    from doit_stages.remote_shell import through_proxy
    from doit_stages.session import Session
    from tests.unit.inifile import LOCAL_INI, in_section, write_ini

    cfg = tmp_path / "ssh_config"
    if config is not None:
        cfg.write_text(config.replace("INCLUDED", str(tmp_path / "conf.d")))
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "bastion.conf").write_text("Host web*\n  ProxyJump gate.example.com\n")
    assert through_proxy(cfg) is bounded
    ini = write_ini(tmp_path, in_section(LOCAL_INI, "project", f"ssh_config = {cfg}\nparallel = 3"))
    logins = Session(load_config(ini)).connections._logins
    assert getattr(logins, "_value", None) == (3 if bounded else None)


def test_the_ssh_config_is_read_as_ssh_reads_it_includes_and_the_system_file(tmp_path, monkeypatch):
    """-F file: that file and what it Includes (relative: from ~/.ssh); no -F: ~/.ssh/config and the system's
    file, each with its Includes (the system's relative to /etc/ssh)."""
    from doit_stages import remote_shell
    home = tmp_path / "home"
    (home / ".ssh" / "conf.d").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(remote_shell, "SYSTEM_CONFIG", tmp_path / "etc" / "ssh_config")
    (home / ".ssh" / "conf.d" / "a.conf").write_text("Host *\n  ControlPersist 10m\n  Include deeper\n")
    (home / ".ssh" / "deeper").write_text("Host *\n  KexAlgorithms sntrup761x25519-sha512@openssh.com\n")
    cfg = tmp_path / "project_ssh_config"
    cfg.write_text('Host *\n  Include "conf.d/*.conf"\n')
    assert remote_shell.config_keywords(cfg) == {"host", "controlpersist", "kexalgorithms"}
    assert not any(o.startswith("ControlPersist") for o in ssh_options(cfg))
    assert remote_shell.config_keywords(None) == set()        # no ~/.ssh/config, no system file
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "ssh_config").write_text("Include sys.d/*.conf\n")
    (tmp_path / "etc" / "sys.d").mkdir()
    (tmp_path / "etc" / "sys.d" / "gate.conf").write_text("Match host db*\n  ProxyJump gate\n")
    assert remote_shell.through_proxy(None) and not remote_shell.through_proxy(cfg)   # -F: no system file
    (home / ".ssh" / "config").write_text("Include ~/.ssh/config\n")   # itself: the nesting bound stops it
    assert "proxyjump" in remote_shell.config_keywords(None)


def test_the_masters_persistence_is_the_ssh_configs_when_it_names_one(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  User deploy\n")
    assert "ControlPersist=60" in ssh_options(cfg)
    cfg.write_text("Host *\n  ControlPersist 15m\n")
    assert not any(o.startswith("ControlPersist") for o in ssh_options(cfg))
