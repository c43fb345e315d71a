from django.db import connection
from django.http import HttpResponse
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.views.decorators.cache import never_cache

from .models import Post


@never_cache
def health(request):
    # A live process is not enough: the deploy tool's health check must see the database too.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return HttpResponse("database unavailable\n", status=500, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


def index(request):
    items = format_html_join(
        "\n", "<li><h2>{}</h2><p>{}</p></li>",
        ((p.title, p.body) for p in Post.objects.all()),
    )
    return HttpResponse(format_html(
        '<!doctype html>\n<html><head><title>Blog</title>'
        '<link rel="stylesheet" href="{}"></head>\n'
        "<body><h1>Blog</h1>\n<ul>\n{}\n</ul></body></html>\n",
        static("posts/site.css"), items,
    ))
