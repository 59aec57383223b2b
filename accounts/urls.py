from django.urls import path

from accounts import views

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
    path("settings/time-zone/", views.account_time_zone, name="time-zone"),
    path("settings/audit/", views.audit_log, name="audit"),
    path("settings/leave/", views.account_leave, name="leave"),
    path("switch-account/", views.account_switch, name="switch"),
    path("welcome/", views.welcome, name="welcome"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
