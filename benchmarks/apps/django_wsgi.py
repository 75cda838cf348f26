"""django: the project of django_project.py behind Django's WSGI handler."""

import django_project  # noqa: F401 - configures the settings get_wsgi_application reads
from django.core.wsgi import get_wsgi_application

app = get_wsgi_application()
