"""factory_boy factories for the test world."""

import uuid

import factory
from allauth.account.models import EmailAddress

from accounts.models import Account, Membership, Role, User

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def verified(self, create, extracted, **kwargs):
        if create and extracted is not False:
            EmailAddress.objects.create(user=self, email=self.email, verified=True, primary=True)
        if create:
            self.save()


class AccountFactory(factory.django.DjangoModelFactory):
    """An account with its default project, as ``account_create`` makes one."""

    class Meta:
        model = Account
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Account {n}")

    @factory.post_generation
    def default_project(self, create, extracted, **kwargs):
        from accounts.services import project_default

        if create:
            project_default(self)


class MembershipFactory(factory.django.DjangoModelFactory):
    """A member; a developer or viewer joins the account's default project, as one who accepts
    an invitation does (``projects=[...]``: those projects instead, as a member)."""

    class Meta:
        model = Membership
        skip_postgeneration_save = True

    account = factory.SubFactory(AccountFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.DEVELOPER

    @factory.post_generation
    def projects(self, create, extracted, **kwargs):
        from accounts.models import ProjectMembership
        from accounts.services import _join_default_project

        if not create:
            return
        if extracted is None:
            _join_default_project(self)
            return
        for project in extracted:
            ProjectMembership.objects.create(project=project, membership=self)


def project(account, name: str, *members, role: str = "member", **options):
    """A project of ``account`` through the real service, with ``members`` (users) in it."""
    from accounts.services import project_create, project_member_set

    created = project_create(account=account, name=name, **options)
    for user in members:
        membership = Membership.objects.get(account=account, user=user)
        project_member_set(project=created, membership=membership, role=role)
    return created


class RoutingGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "catalogue.RoutingGroup"
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"group-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    description = "A test group."
    rate_multiplier = 1


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "catalogue.Channel"
        django_get_or_create = ("slug",)

    slug = "sandbox-openai"
    name = "Sandbox OpenAI"
    kind = "openai"


class AIModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "catalogue.AIModel"
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"model-{n}")
    display_name = factory.LazyAttribute(lambda o: o.slug)
    family = "text"
    # Not fields of the model: its first deployment (see _create).
    channel = factory.SubFactory(ChannelFactory)
    upstream_model = factory.LazyAttribute(lambda o: o.slug)
    input_price = 2_000_000
    output_price = 8_000_000
    context_window = 128_000
    max_output_tokens = 16_000

    @classmethod
    def _create(cls, model_class, *args, channel, upstream_model, **kwargs):
        from catalogue.models import Deployment

        model = super()._create(model_class, *args, **kwargs)
        Deployment.objects.create(model=model, channel=channel, upstream_model=upstream_model)
        return model

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.set(extracted)


def issue_key(account, group, **options):
    """A fresh inference key through the real service; returns (ApiKey, secret)."""
    from keys.models import ApiKey
    from keys.services import api_key_issue

    name = options.pop("name", None)
    if name is None:
        # Key names are unique in an account: "test", then "test 2", "test 3", ...
        taken = set(ApiKey.objects.filter(account=account).values_list("name", flat=True))
        name = next(n for n in ("test", *(f"test {i}" for i in range(2, 10_000))) if n not in taken)
    return api_key_issue(account=account, group=group, name=name, **options)


def fund(account, credits: int = 100, reference: str | None = None):
    """Top the account's wallet up through the real service."""
    from billing.services import wallet_top_up

    return wallet_top_up(
        account=account,
        amount=credits * 1_000_000,
        reference=reference or f"test-{uuid.uuid4().hex}",
    )


PUBLIC_GROUPS = ("claude-default", "gemini-default", "default")


def funded_catalogue(account, credits: int = 50) -> dict:
    """The demo catalogue and ``credits`` in the account's wallet; the catalogue's routing
    groups by slug."""
    from catalogue.demo import seed_catalogue

    catalogue = seed_catalogue()
    fund(account, credits)
    return catalogue


def funded_key(account, actor=None, *, group: str = "default", credits: int = 50, **options):
    """The demo catalogue, ``credits`` in the account's wallet, and one key of the routing group
    ``group`` (with ``options``: name, limits...); returns (ApiKey, secret)."""
    catalogue = funded_catalogue(account, credits)
    return issue_key(account, catalogue[group], actor=actor, **options)


def funded_keys(account, actor, *, credits: int = 50, groups=PUBLIC_GROUPS) -> dict[str, str]:
    """The demo catalogue, ``credits`` in the account's wallet, and a key's secret per routing
    group slug: what a test of the data plane starts from."""
    catalogue = funded_catalogue(account, credits)
    return {slug: issue_key(account, catalogue[slug], actor=actor)[1] for slug in groups}


def budgets_reread(account) -> None:
    """This process reads the account's budgets again at its next call (not within
    billing.budgets.RULES_SECONDS): for budgets changed without the budget service."""
    from billing.metering import meter

    meter.budgets_changed(account.pk)
