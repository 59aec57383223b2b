from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from accounts.signals import account_created
        from billing.services import wallet_open

        # Every account has a wallet from the moment it exists (billing builds on accounts).
        account_created.connect(
            lambda sender, account, **_: wallet_open(account=account),
            weak=False,
            dispatch_uid="billing.wallet_open",
        )
