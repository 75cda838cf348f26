"""django: a minimal single-file Django project; ``/json`` answers with a JsonResponse.

Settings, URLconf and view live here; django_wsgi.py and django_asgi.py only build the WSGI
and ASGI handlers over it, so both forms run the same project. The middleware is the stateless
part of ``startproject``'s defaults (no database, sessions or auth: a JSON endpoint needs none).
"""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from payloads import JSON_DOC

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="benchmark-only-not-secret",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    USE_TZ=True,
)


def json_view(request: HttpRequest) -> JsonResponse:
    """A plain function view, sync like most Django code (under ASGI Django runs it in a
    thread, which is part of what the ASGI form measures)."""
    return JsonResponse(JSON_DOC)


urlpatterns = [path("json", json_view)]
