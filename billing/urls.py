from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("wallet/", views.wallet, name="wallet"),
    path("wallet/redeem/", views.wallet_redeem, name="redeem"),
    path("wallet/threshold/", views.wallet_threshold, name="threshold"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
]
