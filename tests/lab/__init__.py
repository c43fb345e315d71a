"""The lab: the real parts the integration tests (and the benches in bench/) run against, one module a
service, plain helpers with no pytest in them (tests/integration/conftest.py makes fixtures of them).

    common.py       NASTY_PASSWORD, HarnessError, free ports, servers that die with us, CmdlineScan
    sshd.py         SshHosts / SshHost: one sshd per host on 127.0.0.1, each in its own mount namespace
    mariadb.py      MariaDB (127.0.0.1:3306, root), option files for the clients, a second address for it
    postgres.py     PostgreSQL (127.0.0.1:5432, postgres): roles with passwords, their databases, libpq's
                    password files
    nginx.py        a real nginx serving a host's files, inside the host's namespace
    health.py       a health URL served by this process, counting when it was asked
    s3.py           moto's real S3 HTTP API on 127.0.0.1
    stages_ini.py   the one stages.ini of the tests, and the changes each test makes to it
    project.py      a project as a user drives it: its stages.ini, `doit` as a subprocess, the hosts' state
    world.py        one test module's blog: hosts emptied, fresh databases and user, the app's repository
    apprepo.py      examples/blog in a fresh git or hg repository, and migrations to commit
    rehearsal_migrations.py   the migrations of every kind the rehearsal judges
    configs.py      a run's config built as the dataclasses, for one step's tests on plain inputs
    releases.py     release ids and release-log records; a release's archive in a temp deploy_root
    argv_recorder.py  doit run recording every argv it starts here and sends to a host
    deployer.py     a doit run stopped at a `pause` failpoint (tasks/failpoints.py), waited for without polling
    faults.py       the fault matrix's lab (tests/integration/test_fault_matrix.py)

Imported as `tests.lab.<module>`: pytest puts the repository's root on sys.path (pyproject.toml's
`pythonpath`); a bench adds it itself.
"""
