from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from accounts.signals import account_created
        from billing import key_spend
        from billing.services import wallet_open
        from keys import spend

        spend.install(key_spend)  # the key pages' spend comes from billing's books

        # Every account has a wallet from the moment it exists (billing builds on accounts).
        account_created.connect(
            lambda sender, account, **_: wallet_open(account=account),
            weak=False,
            dispatch_uid="billing.wallet_open",
        )
