"""The console's URLs with the generation app's console routes, until console/urls.py has them."""

from django.urls import include, path

from console.urls import urlpatterns as console_urlpatterns

included = any(getattr(p, "namespace", None) == "generation" for p in console_urlpatterns)
urlpatterns = [
    *([] if included else [path("", include("generation.urls"))]),
    *console_urlpatterns,
]
