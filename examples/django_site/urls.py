"""Two views: a greeting and an echo of the request body."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django on threadloom!", content_type="text/plain")


def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": request.GET.dict(),
            "body": request.body.decode(),
        }
    )


urlpatterns = [path("", home), path("echo", echo)]
