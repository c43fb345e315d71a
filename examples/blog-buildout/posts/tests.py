from unittest import mock
from urllib.parse import quote

from django.db import connection
from django.test import SimpleTestCase, TestCase

from blog import dburl

from .models import Post


class DatabaseUrlTests(SimpleTestCase):
    def test_mysql_password_with_shell_metacharacters(self):
        password = "a b;c$(x)`y`'\"#\\%@/?:&="
        db = dburl.parse(f"mysql://bl%20og:{quote(password, safe='')}@db1:3307/blog_prod")
        self.assertEqual(db["USER"], "bl og")
        self.assertEqual(db["PASSWORD"], password)
        self.assertEqual((db["HOST"], db["PORT"], db["NAME"]), ("db1", "3307", "blog_prod"))

    def test_mysql_default_port(self):
        self.assertEqual(dburl.parse("mysql://u:p@h/n")["PORT"], "3306")

    def test_sqlite_absolute_path(self):
        db = dburl.parse("sqlite:////srv/blog/db.sqlite3")
        self.assertEqual(db["NAME"], "/srv/blog/db.sqlite3")

    def test_rejected(self):
        for url in ("postgres://u:p@h/n", "sqlite:///relative.db", "mysql://u:p@h/", "nonsense"):
            with self.subTest(url=url), self.assertRaises(ValueError):
                dburl.parse(url)


class ViewTests(TestCase):
    def test_health(self):
        response = self.client.get("/health/")
        self.assertEqual((response.status_code, response.content), (200, b"ok"))

    def test_health_fails_without_database(self):
        with mock.patch.object(connection, "cursor", side_effect=Exception("down")):
            self.assertEqual(self.client.get("/health/").status_code, 500)

    def test_index_lists_posts_escaped(self):
        Post.objects.create(title="<b>Hi</b>", body="there")
        response = self.client.get("/")
        self.assertContains(response, "&lt;b&gt;Hi&lt;/b&gt;")

    def test_slug_from_title(self):
        self.assertEqual(Post.objects.create(title="Hello, World!", body="").slug, "hello-world")
