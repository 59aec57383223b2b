"""Console routes of the generation app (webhooks and their deliveries)."""

from django.urls import path

from generation import webhook_views

app_name = "generation"

urlpatterns = [
    path("settings/webhooks/", webhook_views.webhooks, name="webhooks"),
    path(
        "settings/webhooks/secret/",
        webhook_views.webhook_secret_rotate_view,
        name="webhook-secret-rotate",
    ),
    path(
        "settings/webhooks/deliveries/<str:webhook_id>/",
        webhook_views.delivery_detail,
        name="delivery-detail",
    ),
    path(
        "settings/webhooks/deliveries/<str:webhook_id>/redeliver/",
        webhook_views.delivery_redeliver,
        name="delivery-redeliver",
    ),
]
