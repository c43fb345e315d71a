# Pick blog.settings.test or blog.settings.prod; this package itself holds no settings.
