from django.urls import path

from accounts import key_views, views

app_name = "accounts"

urlpatterns = [
    path("team/", views.team, name="team"),
    path("team/invitations/", views.invitation_create, name="invitation-create"),
    path(
        "team/invitations/<str:public_id>/resend/",
        views.invitation_resend,
        name="invitation-resend",
    ),
    path(
        "team/invitations/<str:public_id>/revoke/",
        views.invitation_revoke,
        name="invitation-revoke",
    ),
    path("team/members/<str:public_id>/role/", views.member_role, name="member-role"),
    path("team/members/<str:public_id>/remove/", views.member_remove, name="member-remove"),
    path("settings/", views.account_settings, name="settings"),
    path("settings/audit/", key_views.audit_log, name="audit"),
    path("settings/leave/", views.account_leave, name="leave"),
    path("keys/", key_views.keys_list, name="keys"),
    path("keys/new/", key_views.key_create, name="key-create"),
    path("keys/management/", key_views.management_keys, name="management-keys"),
    path(
        "keys/management/new/",
        key_views.management_key_create,
        name="management-key-create",
    ),
    path(
        "keys/management/<str:public_id>/revoke/",
        key_views.management_key_revoke,
        name="management-key-revoke",
    ),
    path("keys/<str:public_id>/", key_views.key_detail, name="key-detail"),
    path("keys/<str:public_id>/edit/", key_views.key_update, name="key-update"),
    path("keys/<str:public_id>/roll/", key_views.key_roll, name="key-roll"),
    path("keys/<str:public_id>/revoke/", key_views.key_revoke, name="key-revoke"),
    path("keys/<str:public_id>/delete/", key_views.key_delete, name="key-delete"),
    path("groups/", key_views.groups, name="groups"),
    path("switch-account/", views.account_switch, name="switch"),
    path("welcome/", views.welcome, name="welcome"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
