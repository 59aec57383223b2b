from django.urls import path

from generation.dataplane import catalogue

urlpatterns = [
    path("v1/models", catalogue.models_list, name="v1-models"),
    path("v1beta/models", catalogue.gemini_models_list, name="v1beta-models"),
]
