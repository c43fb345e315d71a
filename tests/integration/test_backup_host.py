"""A production database whose backups live on their own host (backup_host = a third host, in no stage):
the test database is refreshed from there, the backup travelling through the deploying machine."""
from __future__ import annotations


def test_backups_on_a_separate_host_refresh_the_test_database(blog_world, ssh_hosts):
    p, db = blog_world["project"], blog_world["mariadb"]
    web1, web2 = blog_world["hosts"]
    db1 = ssh_hosts.add("db1")
    db1.wipe()
    p.write(prod_extra=f"backup_host = {db1.url}\n")
    db.query(blog_world["prod"], "CREATE TABLE legacy (id INT PRIMARY KEY, note VARCHAR(40))")
    db.query(blog_world["prod"], "INSERT INTO legacy VALUES (1, 'from production'), (2, 'also')")
    p.ok("deploy:test")
    backups = p.backups(db1)
    assert len(backups) == 1 and backups[0]["tables"] == {"legacy": 2}
    assert not web1.path("/srv/blog/db_backup").exists() and not web2.path("/srv/blog/db_backup").exists()
    assert db.row_counts(blog_world["test"])["legacy"] == 2
    incoming = web1.path("/srv/blog/.deploy/incoming")
    assert not incoming.exists() or list(incoming.iterdir()) == []
    # the promotion's backups around the migration of prod land on db1 as well
    p.ok("promote:staging")
    assert [b["reason"].split()[0] for b in p.backups(db1)[-2:]] == ["before", "after"]
