"""Staff tools: wallets with audited credit/debit, the ledger and payments (read-only),
redemption batches."""

import csv

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse

from billing import errors, redemption, services
from billing.models import (
    Hold,
    LedgerEntry,
    Payment,
    RedemptionBatch,
    RedemptionCode,
    UsageRecord,
    Wallet,
)
from core.money import AmountError, format_credits, to_micros


class ReadOnlyAdmin(admin.ModelAdmin):
    """Books are written by services only; staff read them here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AdjustForm(forms.Form):
    direction = forms.ChoiceField(choices=[("credit", "Credit"), ("debit", "Debit")])
    amount = forms.CharField(help_text="Credits, e.g. 25 or 12.5 (at most six decimals).")
    note = forms.CharField(max_length=200, help_text="Why: kept in the ledger and audit log.")

    def clean_amount(self):
        try:
            return to_micros(self.cleaned_data["amount"], allow_zero=False)
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ["account", "balance_credits", "held_credits", "in_flight", "threshold"]
    search_fields = ["account__name", "account__public_id"]
    readonly_fields = [
        "account",
        "balance",
        "held",
        "in_flight",
        "low_balance_threshold",
        "low_balance_alerted",
        "concurrency_limit",
    ]

    @admin.display(description="balance")
    def balance_credits(self, wallet):
        return format_credits(wallet.balance)

    @admin.display(description="held")
    def held_credits(self, wallet):
        return format_credits(wallet.held)

    @admin.display(description="alert below")
    def threshold(self, wallet):
        return format_credits(wallet.low_balance_threshold)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("billing.change_wallet")

    def get_urls(self):
        return [
            path(
                "<int:pk>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="billing_wallet_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request, pk):
        """Credit or debit a wallet by hand: a ledger entry and an audit event name the staff."""
        if not request.user.has_perm("billing.change_wallet"):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet.objects.select_related("account"), pk=pk)
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            amount = form.cleaned_data["amount"]
            if form.cleaned_data["direction"] == "debit":
                amount = -amount
            try:
                services.wallet_admin_adjust(
                    account=wallet.account,
                    amount=amount,
                    actor=request.user,
                    note=form.cleaned_data["note"],
                )
            except errors.BillingError as error:
                form.add_error("amount", error.message)
            else:
                messages.success(request, f"Adjusted {wallet.account} by {format_credits(amount)}.")
                return redirect(reverse("admin:billing_wallet_change", args=[wallet.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Credit or debit {wallet.account}",
            "wallet": wallet,
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "admin/billing/wallet/adjust.html", context)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "kind", "amount", "balance_after", "reference"]
    list_filter = ["kind"]
    search_fields = ["account__name", "reference", "idempotency_key"]
    date_hierarchy = "created_at"


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "reference", "amount", "status", "charged"]
    list_filter = ["status", "counts_in_flight"]
    search_fields = ["reference", "account__name"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "api_key", "model", "protocol", "credits"]
    list_filter = ["family", "protocol", "stream"]
    search_fields = ["request_id", "account__name"]
    date_hierarchy = "created_at"


class BatchForm(forms.ModelForm):
    amount_credits = forms.CharField(label="Amount per code (credits)")

    class Meta:
        model = RedemptionBatch
        fields = ["name", "count", "expires_at"]

    def clean_amount_credits(self):
        try:
            return to_micros(self.cleaned_data["amount_credits"], allow_zero=False)
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(RedemptionBatch)
class RedemptionBatchAdmin(admin.ModelAdmin):
    """Adding a batch generates its codes and answers with them as a CSV download: the only
    time the codes exist in plaintext (the database keeps digests)."""

    form = BatchForm
    list_display = ["name", "amount_credits", "count", "redeemed", "expires_at", "created_at"]

    @admin.display(description="amount")
    def amount_credits(self, batch):
        return format_credits(batch.amount)

    @admin.display(description="redeemed")
    def redeemed(self, batch):
        return batch.codes.filter(redeemed_at__isnull=False).count()

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["fields"] = ["name", "expires_at"]
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        batch, codes = redemption.redemption_batch_create(
            name=form.cleaned_data["name"],
            amount=form.cleaned_data["amount_credits"],
            count=form.cleaned_data["count"],
            expires_at=form.cleaned_data["expires_at"],
            actor=request.user,
        )
        obj.pk = batch.pk
        request._generated_codes = codes
        return None

    def response_add(self, request, obj, post_url_continue=None):
        codes = getattr(request, "_generated_codes", [])
        batch = RedemptionBatch.objects.get(pk=obj.pk)
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="codes-batch-{batch.pk}.csv"'
        writer = csv.writer(response)
        writer.writerow(["code", "credits", "expires_at", "batch"])
        for code in codes:
            writer.writerow(
                [code, format_credits(batch.amount), batch.expires_at or "", batch.name]
            )
        return response


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "batch", "redeemed_at", "account"]
    list_filter = ["batch"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Top-ups bought through a payment provider; the webhook is what turns one paid."""

    list_display = ["public_id", "account", "provider", "amount_credits", "status", "created_at"]
    list_filter = ["status", "provider"]
    search_fields = ["public_id", "provider_payment_id", "account__name", "account__public_id"]
    raw_id_fields = ["account", "created_by"]

    @admin.display(description="Amount")
    def amount_credits(self, obj):
        return format_credits(obj.amount)
