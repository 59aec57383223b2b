from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/channels/", views.channel_create, name="channel-create"),
    path("alerts/channels/<str:public_id>/", views.channel_edit, name="channel-edit"),
    path("alerts/channels/<str:public_id>/delete/", views.channel_delete, name="channel-delete"),
    path("alerts/channels/<str:public_id>/rotate/", views.channel_rotate, name="channel-rotate"),
    path("alerts/channels/<str:public_id>/test/", views.channel_test, name="channel-test"),
    path("alerts/deliveries/<str:webhook_id>/", views.delivery_status, name="delivery-status"),
    path("alerts/rules/", views.rule_create, name="rule-create"),
    path("alerts/rules/<str:public_id>/", views.rule_edit, name="rule-edit"),
    path("alerts/rules/<str:public_id>/delete/", views.rule_delete, name="rule-delete"),
]
