from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Account, AuditEvent, GroupGrant, Invitation, Membership, User
from catalogue.admin import ModelAliasInline
from catalogue.models import RoutingGroup


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class GroupGrantInline(admin.TabularInline):
    model = GroupGrant
    extra = 0
    autocomplete_fields = ["account"]
    verbose_name = "exclusive group grant"


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "public_id", "created_at"]
    search_fields = ["name", "public_id", "memberships__user__email"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline, GroupGrantInline]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "account",
        "role",
        "created_at",
        "sent_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role"]
    search_fields = ["email", "account__name"]
    exclude = ["token_digest"]
    readonly_fields = ["public_id", "sent_at", "accepted_at", "accepted_by", "revoked_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "actor_label", "action", "target"]
    list_filter = ["action"]
    search_fields = ["account__name", "actor_label", "target"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RoutingGroup)
class RoutingGroupAdmin(admin.ModelAdmin):
    list_display = ["id", "slug", "name", "rate_multiplier", "exclusive"]
    list_filter = ["exclusive"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [GroupGrantInline, ModelAliasInline]
