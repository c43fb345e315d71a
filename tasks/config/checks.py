"""Rules across sections, once every section is read: the stages' links and promote_from graph, the
databases restore:<stage> may drop, and paths that may be relative only when every host is this machine."""
from __future__ import annotations

from dataclasses import replace

from . import rules
from .model import Database, Host, Project, Stage
from .reader import Ini
from .values import host_key


def check_stage_graph(ini: Ini, stages: dict[str, Stage]) -> None:
    links = {}
    for st in stages.values():
        if st.link in links.values():
            other = next(n for n, ln in links.items() if ln == st.link)
            ini.fail(f"stage:{st.name}", "link",
                     f"{st.link} is already the link of stage {other}; give each stage its own link")
        problem = rules.link_problem(st.link, st.name, links) if st.link else None
        if problem:
            ini.fail(f"stage:{st.name}", "link", problem)
        links[st.name] = st.link
        if st.promote_from and st.promote_from not in stages:
            ini.fail(f"stage:{st.name}", "promote_from",
                     f"names [stage:{st.promote_from}], which does not exist; add it or fix the name")
    for st in stages.values():
        seen, cur = [st.name], st
        while cur.promote_from:
            cur = stages[cur.promote_from]
            if cur.name in seen:
                ini.fail(f"stage:{st.name}", "promote_from",
                         f"promote_from forms a cycle ({' -> '.join(seen + [cur.name])}); break it")
            seen.append(cur.name)


def check_host_spellings(ini: Ini, stage_hosts: dict[str, tuple[Host, ...]], databases: dict[str, Database]) -> None:
    """One host is written one way everywhere: runs tell hosts apart by how they are written (one connection
    and one lock each), so two spellings of one host would be locked, uploaded to and switched as two."""
    first: dict[tuple, tuple[Host, str]] = {}
    places = [(h, f"stage:{n}", "hosts") for n, hs in stage_hosts.items() for h in hs]
    places += [(d.backup_host, f"database:{d.name}", "backup_host") for d in databases.values()
               if d.backup_host is not None and ini.written(f"database:{d.name}", "backup_host")]
    for h, section, key in places:
        other, where = first.setdefault(host_key(h), (h, section))
        if other.spec != h.spec:
            ini.fail(section, key, f"{h} is {other} of [{where}] written another way (the same login, port and "
                                   f"machine); write it as {other} here too")


def check_restore_targets(ini: Ini, stages: dict[str, Stage], databases: dict[str, Database]) -> None:
    """A database that restore:<stage> drops and reloads must not be its source, nor any database a
    stage without restore_from runs on (production): compared by server and schema, not section name."""
    def ident(db):
        return rules.database_identity(db.engine, db.host, db.port, db.dbname,
                                       str(db.backup_host) if db.backup_host else "", db.path)
    live = {st.database: st.name for st in stages.values() if st.database and not st.restore_from}
    for st in stages.values():
        if not st.restore_from:
            continue
        target = databases[st.database]
        key = "path" if target.engine == "sqlite" else "name"
        if st.database in live:
            ini.fail(f"stage:{st.name}", "database",
                     f"[database:{st.database}] is also the database of stage {live[st.database]}, which "
                     f"runs on it; restore:{st.name} would drop it: give stage {st.name} a database of its own")
        protected = {st.restore_from: f"the source of restore_from in stage {st.name}",
                     **{d: f"the database of stage {n}" for d, n in live.items()}}
        for other, why in protected.items():
            if other != st.database and ident(databases[other]) == ident(target):
                where = (target.path if target.engine == "sqlite"
                         else f"{target.dbname} on {target.host}:{target.port}")
                ini.fail(f"database:{st.database}", key,
                         f"{where} is the same database as [database:{other}] ({why}); restore:{st.name} "
                         f"would drop it: give [database:{st.database}] a database of its own")


def resolve_paths(ini: Ini, project: Project, databases: dict[str, Database], all_local: bool):
    """Relative deploy_root / sqlite paths only make sense when every host is this machine."""
    root = project.deploy_root
    if not root.startswith("/"):
        if not all_local:
            ini.fail("project", "deploy_root",
                     f"{root!r} must be an absolute path on the hosts, e.g. /srv/{project.name}")
        project = replace(project, deploy_root=str(ini.relpath(root)))
    problem = rules.absolute_path_problem(project.deploy_root) if project.deploy_root else None
    if problem:
        ini.fail("project", "deploy_root", problem)
    out = {}
    for name, db in databases.items():
        if db.engine == "sqlite" and not db.path.startswith("/"):
            if not all_local:
                ini.fail(f"database:{name}", "path", f"{db.path!r} must be an absolute path on the host")
            db = replace(db, path=str(ini.relpath(db.path)))
        problem = rules.absolute_path_problem(db.path) if db.engine == "sqlite" and db.path else None
        if problem:
            ini.fail(f"database:{name}", "path", problem)
        out[name] = db
    return project, out
