"""django: the project of django_project.py behind Django's ASGI handler."""

import django_project  # noqa: F401 - configures the settings get_asgi_application reads
from django.core.asgi import get_asgi_application

app = get_asgi_application()
