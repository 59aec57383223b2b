from django.urls import path

from keys import project_views, views

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
    path("projects/", project_views.project_list, name="projects"),
    path("projects/new/", project_views.project_create, name="project-create"),
    path("projects/<str:public_id>/", project_views.project_detail, name="project-detail"),
    path("projects/<str:public_id>/edit/", project_views.project_update, name="project-update"),
    path("projects/<str:public_id>/delete/", project_views.project_delete, name="project-delete"),
    path(
        "projects/<str:public_id>/members/",
        project_views.project_member_add,
        name="project-member-add",
    ),
    path(
        "projects/<str:public_id>/members/<str:member_id>/remove/",
        project_views.project_member_remove,
        name="project-member-remove",
    ),
]
