from django.urls import path

from keys import views

app_name = "keys"

urlpatterns = [
    path("keys/", views.keys_list, name="keys"),
    path("keys/new/", views.key_create, name="key-create"),
    path("keys/management/", views.management_keys, name="management-keys"),
    path(
        "keys/management/new/",
        views.management_key_create,
        name="management-key-create",
    ),
    path(
        "keys/management/<str:public_id>/revoke/",
        views.management_key_revoke,
        name="management-key-revoke",
    ),
    path("keys/<str:public_id>/", views.key_detail, name="key-detail"),
    path("keys/<str:public_id>/edit/", views.key_update, name="key-update"),
    path("keys/<str:public_id>/roll/", views.key_roll, name="key-roll"),
    path("keys/<str:public_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("keys/<str:public_id>/delete/", views.key_delete, name="key-delete"),
    path("groups/", views.groups, name="groups"),
]
