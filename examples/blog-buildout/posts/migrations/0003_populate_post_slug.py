from django.db import migrations
from django.utils.text import slugify


def fill_slugs(apps, schema_editor):
    # The historical model, not posts.models.Post: its save() may change in later releases.
    Post = apps.get_model("posts", "Post")
    for post in Post.objects.filter(slug="").only("id", "title"):
        post.slug = slugify(post.title)[:200]
        post.save(update_fields=["slug"])


def clear_slugs(apps, schema_editor):
    # Reversible so that a rollback to a release before 0003 can migrate back down.
    apps.get_model("posts", "Post").objects.update(slug="")


class Migration(migrations.Migration):

    dependencies = [
        ("posts", "0002_post_slug"),
    ]

    operations = [
        migrations.RunPython(fill_slugs, clear_slugs),
    ]
