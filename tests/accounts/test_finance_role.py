"""The finance role on every console page and action (issue 16, item 6): it sees the wallet,
usage, statements and budgets of the whole account and exports them; it cannot create, roll,
revoke or edit keys (nor mint a management key, so the management API stays out of its reach),
cannot use the playground, and manages nothing else (members, webhooks, alerts, projects).

Every route of the console is listed here once, as read (GET) or as an action (POST): a route
added without a line here fails ``test_every_console_route_is_in_this_table``."""

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone

from accounts.models import Project
from billing.models import Payment
from tests.factories import funded_key

pytestmark = pytest.mark.django_db

MONTH = timezone.now().strftime("%Y-%m")
# What the finance role gets on each route: 200 (302 after a form, 422 for an empty form that
# it may send), 403 refused, 404 for the operators' pages no member sees.
READ = {
    "console:dashboard": 200,
    "billing:wallet": 200,
    "billing:ledger-export": 200,
    "billing:usage": 200,
    "billing:usage-export": 200,
    "billing:budgets": 200,
    "billing:statements": 200,
    "billing:statement": 200,
    "billing:statement-pdf": 200,
    "billing:project-statement": 200,
    "billing:project-statement-pdf": 200,
    "billing:top-up": 200,
    "billing:payment": 200,
    "keys:keys": 200,  # read: every key with its spend, no secret
    "keys:key-detail": 200,
    "keys:groups": 200,
    "keys:projects": 200,  # every project of the account
    "keys:project-detail": 200,
    "generation:tasks": 200,
    "generation:task-detail": 200,
    "generation:task-card": 200,
    "generation:task-row": 200,
    "accounts:team": 200,
    "accounts:settings": 200,
    "keys:key-create": 403,  # the form to create a key
    "keys:management-keys": 403,
    "keys:management-key-create": 403,
    "generation:playground": 200,  # the page says who may use it; every action is refused
    "generation:playground-estimate": 403,
    "accounts:audit": 403,
    "generation:webhooks": 403,
    "alerts:alerts": 403,  # alert rules and channels are the admins' (budget alerts go there)
    "generation:channels": 404,  # the operators' (staff) pages: not there for any member
    "console:operations": 404,
}
ACT = {
    "billing:budget-save": 200,  # finance sets budgets
    "billing:statement-emails": 200,
    "billing:top-up": 302,  # starts a payment
    "billing:threshold": 422,  # allowed: the empty form's error
    "billing:redeem": 422,  # allowed (money in): the empty form's error
    "keys:key-create": 403,
    "keys:key-update": 403,
    "keys:key-roll": 403,
    "keys:key-revoke": 403,
    "keys:key-delete": 403,
    "keys:management-key-create": 403,
    "keys:management-key-revoke": 403,
    "keys:project-create": 403,
    "keys:project-update": 403,
    "keys:project-delete": 403,
    "keys:project-member-add": 403,
    "keys:project-member-remove": 403,
    "generation:playground-chat": 403,
    "generation:playground-chat-code": 403,
    "generation:playground-images": 403,
    "generation:playground-task": 403,
    "generation:task-cancel": 403,
    "generation:webhook-secret-rotate": 403,
    "generation:delivery-redeliver": 403,
    "generation:channel-test": 404,
    "generation:channel-disable": 404,
    "generation:channel-enable": 404,
    "accounts:invitation-create": 403,
    "accounts:invitation-resend": 403,
    "accounts:invitation-revoke": 403,
    "accounts:member-role": 403,
    "accounts:member-remove": 403,
    "accounts:time-zone": 403,
    "alerts:channel-create": 403,
    "alerts:channel-edit": 403,
    "alerts:channel-delete": 403,
    "alerts:channel-rotate": 403,
    "alerts:channel-test": 403,
    "alerts:rule-create": 403,
    "alerts:rule-edit": 403,
    "alerts:rule-delete": 403,
}
# Routes that are no role's concern: leaving or switching accounts, invitations, the payment
# provider's and the sandbox checkout's, details reached from pages already listed.
NOT_THE_ROLES = {
    "accounts:leave", "accounts:switch", "accounts:welcome", "accounts:invitation-accept",
    "billing:sandbox-checkout", "billing:payment-webhook", "generation:playground-usage",
    "generation:delivery-detail", "alerts:delivery-status",
}  # fmt: skip
NAMESPACES = ("console", "billing", "keys", "generation", "accounts", "alerts")


def console_routes() -> set[str]:
    names = set()
    for namespace, (_, resolver) in get_resolver().namespace_dict.items():
        if namespace in NAMESPACES:
            names |= {
                f"{namespace}:{name}" for name in resolver.reverse_dict if isinstance(name, str)
            }
    return names


def test_every_console_route_is_in_this_table():
    routes = console_routes()
    assert {"billing:wallet", "keys:key-roll", "generation:playground-chat"} <= routes
    assert routes - (set(READ) | set(ACT) | NOT_THE_ROLES) == set()


@pytest.fixture
def ids(world, settings):
    """An id for every route that takes one: a key with a task, a project, a payment."""
    from catalogue.models import AIModel
    from generation.models import Task

    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    settings.BYTESPIKE_PAYMENT_PROVIDER = "sandbox"  # payments on, whatever the environment's
    key = funded_key(world.account, world.owner, group="gemini-default", name="Render")[0]
    project = Project.objects.create(account=world.account, name="Search")
    task = Task.objects.create(account=world.account, api_key=key, request_digest="x",
                               model=AIModel.objects.get(slug="veo-3-fast"))  # fmt: skip
    payment = Payment.objects.create(account=world.account, provider="sandbox", amount=10 * 10**6)
    return {
        "keys:key-detail": [key.public_id],
        "keys:key-update": [key.public_id], "keys:key-roll": [key.public_id],
        "keys:key-revoke": [key.public_id], "keys:key-delete": [key.public_id],
        "keys:management-key-revoke": ["mkey_none"],
        "keys:project-detail": [project.public_id], "keys:project-update": [project.public_id],
        "keys:project-delete": [project.public_id],
        "keys:project-member-add": [project.public_id],
        "keys:project-member-remove": [project.public_id, "mem_none"],
        "billing:statement": [MONTH], "billing:statement-pdf": [MONTH],
        "billing:project-statement": [MONTH, project.public_id],
        "billing:project-statement-pdf": [MONTH, project.public_id],
        "billing:budget-save": ["account"],
        "billing:payment": [payment.public_id],
        "generation:task-detail": [task.public_id], "generation:task-card": [task.public_id],
        "generation:task-row": [task.public_id], "generation:task-cancel": [task.public_id],
        "generation:delivery-redeliver": ["wh_none"],
        "generation:channel-test": ["sandbox"], "generation:channel-disable": ["sandbox"],
        "generation:channel-enable": ["sandbox"],
        "accounts:invitation-resend": ["inv_none"], "accounts:invitation-revoke": ["inv_none"],
        "accounts:member-role": ["mem_none"], "accounts:member-remove": ["mem_none"],
        "alerts:channel-edit": ["ach_none"], "alerts:channel-delete": ["ach_none"],
        "alerts:channel-rotate": ["ach_none"], "alerts:channel-test": ["ach_none"],
        "alerts:rule-edit": ["arl_none"], "alerts:rule-delete": ["arl_none"],
    }  # fmt: skip


FORMS = {
    "billing:budget-save": {"account-monthly": "500", "account-hard": "on"},
    "billing:statement-emails": {"statement_emails": "on"},
    "billing:top-up": {"amount": "25"},
}


def test_finance_reads_every_money_page_and_nothing_that_mints_keys(world, client_for, ids):
    client = client_for(world.finance)
    got = {name: client.get(reverse(name, args=ids.get(name, []))).status_code for name in READ}
    assert got == READ, {k: v for k, v in got.items() if READ[k] != v}


def test_finance_acts_on_money_only(world, client_for, ids):
    client = client_for(world.finance)
    got = {}
    for name in ACT:
        url = reverse(name, args=ids.get(name, []))
        got[name] = client.post(url, FORMS.get(name, {})).status_code
    assert got == ACT, {k: v for k, v in got.items() if ACT[k] != v}


def test_finance_sees_the_playground_read_only_and_no_key_action(world, client_for, ids):
    client = client_for(world.finance)
    page = client.get(reverse("generation:playground")).text
    assert 'id="playground-readonly"' in page and "Read-only." in page
    url = reverse("keys:key-detail", args=ids["keys:key-detail"])
    key_page = client.get(url).text
    assert "Roll" not in key_page and "Revoke" not in key_page
    assert "Revoke" in client_for(world.owner).get(url).text  # what the owner gets
