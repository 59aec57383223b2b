"""What makes alerts look again, besides beat's sweep (``alerts.jobs.alerts_evaluate_recent``):
billing's and callbacks' signals, connected when the app starts. Nothing here runs on the data
plane's path: settlement sends no signal, and beat finds the accounts that spent.
"""

from alerts.models import AlertRule, RuleKind


def _wallet_credited(sender, account_id: int, available: int, **_) -> None:
    from alerts.services import balance_rules_rearm

    balance_rules_rearm(account_id=account_id, available=available)


def _callback_attempted(sender, account_id: int, delivered: bool, **_) -> None:
    """Every callback attempt may extend or end a streak: evaluate the account's callback
    rules in a job (none is enqueued for an account without one)."""
    rules = AlertRule.objects.filter(
        account_id=account_id, kind=RuleKind.CALLBACK_FAILURES, enabled=True
    )
    if rules.exists():
        from alerts.jobs import alerts_evaluate_account

        alerts_evaluate_account.delay_on_commit(account_id, [RuleKind.CALLBACK_FAILURES])


def connect() -> None:
    from alerts.operators import settlement_lag_changed
    from billing.signals import settlement_lagging, wallet_credited
    from generation.callbacks.signals import callback_attempted

    wallet_credited.connect(_wallet_credited, weak=False, dispatch_uid="alerts.rearm")
    callback_attempted.connect(
        _callback_attempted, weak=False, dispatch_uid="alerts.callback_streak"
    )
    settlement_lagging.connect(
        settlement_lag_changed, weak=False, dispatch_uid="alerts.settlement_lag"
    )
