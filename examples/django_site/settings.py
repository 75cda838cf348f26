"""The smallest Django project that is still a real one: settings, URLs, views, WSGI/ASGI.

cd examples && threadloom serve django_site.wsgi:application --model pool --threads 16
"""

SECRET_KEY = "threadloom-example-not-secret"  # an example, never deployed
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
