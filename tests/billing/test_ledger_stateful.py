"""Random sequences of top-ups, holds, settles, releases, refunds and debits keep the books:
after every step, balance == sum of the ledger, held == sum of open holds, available >= 0, and
usage credits == charges. A plain Python model of the wallet must agree with the database."""

import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from accounts.models import Account
from billing import errors, services
from billing.holds import hold_place, hold_release, hold_settle
from billing.invariants import wallet_problems
from billing.models import Hold, Wallet
from billing.usage import UsageFacts
from tests.factories import AIModelFactory, UserFactory

amounts = st.integers(min_value=1, max_value=50_000_000)


class Books(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self):
        super().__init__()
        self.account = Account.objects.create(name=f"acct-{uuid.uuid4().hex[:8]}")
        self.model = AIModelFactory()
        self.staff = UserFactory()
        self.balance = 0
        self.open_holds: dict[str, int] = {}

    def _ref(self) -> str:
        return uuid.uuid4().hex

    @rule(amount=amounts)
    def top_up(self, amount):
        services.wallet_top_up(account=self.account, amount=amount, reference=self._ref())
        self.balance += amount

    @rule(target=holds, amount=amounts, synchronous=st.booleans())
    def place_hold(self, amount, synchronous):
        reference = self._ref()
        available = self.balance - sum(self.open_holds.values())
        try:
            hold_place(
                account_id=self.account.pk,
                reference=reference,
                amount=amount,
                counts_in_flight=synchronous,
            )
        except errors.InsufficientBalanceError:
            assert amount > available
            return reference  # a reference with no hold: settling it must fail cleanly
        except errors.ConcurrencyLimitError:
            return reference
        assert amount <= available
        self.open_holds[reference] = amount
        return reference

    @rule(reference=consumes(holds), charge=st.integers(min_value=0, max_value=80_000_000))
    def settle(self, reference, charge):
        usage = UsageFacts(model_id=self.model.pk, family="text", protocol="openai")
        if reference not in self.open_holds:
            with pytest.raises(Hold.DoesNotExist):
                hold_settle(reference=reference, charge=charge, usage=usage)
            return
        amount = self.open_holds.pop(reference)
        covered = self.balance - sum(self.open_holds.values())
        result = hold_settle(reference=reference, charge=charge, usage=usage)
        assert result.charged == min(charge, covered)
        assert result.shortfall == charge - result.charged
        self.balance -= result.charged
        # Settling again changes nothing.
        again = hold_settle(reference=reference, charge=charge, usage=usage)
        assert again.already_closed and again.charged == result.charged
        assert amount >= 0

    @rule(reference=consumes(holds))
    def release(self, reference):
        released = hold_release(reference=reference)
        assert released == (reference in self.open_holds)
        self.open_holds.pop(reference, None)
        assert hold_release(reference=reference) is False

    @rule(amount=amounts)
    def refund(self, amount):
        services.refund(account=self.account, amount=amount, reference=self._ref())
        self.balance += amount

    @rule(amount=amounts)
    def admin_debit(self, amount):
        available = self.balance - sum(self.open_holds.values())
        try:
            services.wallet_admin_adjust(
                account=self.account, amount=-amount, actor=self.staff, note="correction"
            )
        except errors.InsufficientBalanceError:
            assert amount > available
            return
        self.balance -= amount

    @invariant()
    def books_balance(self):
        assert wallet_problems(self.account.pk) == []
        wallet = Wallet.objects.filter(account=self.account).first()
        if wallet is not None:
            assert wallet.balance == self.balance
            assert wallet.held == sum(self.open_holds.values())
            assert wallet.available >= 0


Books.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.django_db
def test_ledger_invariants_hold_under_random_operations():
    Books.TestCase().runTest()
