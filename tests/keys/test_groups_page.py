"""Models and pricing: the account's available groups, their models and prices after the
group's multiplier."""

import pytest
from django.urls import reverse

from accounts.models import GroupGrant, Role
from catalogue.models import AIModel, Channel, Deployment, RoutingGroup

pytestmark = pytest.mark.django_db

M = 1_000_000


def make_group(slug, *, exclusive=False, multiplier="1.000", **fields):
    fields.setdefault("name", slug.title())
    return RoutingGroup.objects.create(
        slug=slug, exclusive=exclusive, rate_multiplier=multiplier, **fields
    )


def make_model(slug, *, groups, family="text", **fields):
    channel, _ = Channel.objects.get_or_create(
        slug="sandbox-test", defaults={"name": "Sandbox", "kind": "openai"}
    )
    fields.setdefault("display_name", slug.title())
    model = AIModel.objects.create(slug=slug, family=family, **fields)
    Deployment.objects.create(model=model, channel=channel, upstream_model=slug)
    model.groups.set(groups)
    return model


@pytest.fixture
def catalogue(db):
    public = make_group(
        "default", name="Everyday", description="Text, images and video.", multiplier="1.500"
    )
    exclusive = make_group("enterprise", name="Enterprise", exclusive=True, multiplier="0.850")
    make_group("secret-lab", name="Secret Lab", exclusive=True)
    make_model(
        "text-one",
        groups=[public, exclusive],
        display_name="Text One",
        input_price=3 * M,
        output_price=15 * M,
        cache_read_price=300_000,
        cache_write_price=3_750_000,
        context_window=200_000,
    )
    make_model(
        "image-one",
        groups=[public],
        family="image",
        display_name="Image One",
        image_prices={"default": 40_000, "1024x1536/high": 100_000},
        sizes=["1024x1024", "1024x1536"],
    )
    make_model(
        "video-one",
        groups=[public],
        family="video",
        display_name="Video One",
        video_price_per_second=100_000,
        video_submit_fee=20_000,
        durations=[4, 8],
    )
    make_model("retired", groups=[public], display_name="Retired Model", is_active=False)
    return public, exclusive


@pytest.mark.parametrize("role", list(Role))
def test_every_member_sees_public_groups_with_prices_after_the_multiplier(
    world, client_for, catalogue, role
):
    public, _ = catalogue
    response = client_for(world.member(role)).get(reverse("keys:groups"))
    assert response.status_code == 200
    text = response.text
    section = text.split('id="group-default"')[1]
    assert "Everyday" in text and "<code>default</code>" in section
    assert f"<code>{public.pk}</code>" in section and "Text, images and video." in section
    assert "\N{MULTIPLICATION SIGN}1.5" in section
    # Text per 1M tokens: 3 / 15 / 0.30 / 3.75 list, times 1.5.
    for price in ("4.50", "22.50", "0.45", "5.625"):
        assert f'<td class="num">{price}</td>' in section, price
    assert "200,000 tokens" in section
    # Images per tier, video per second plus the submit fee, all times 1.5.
    image = section.split('class="tier-table"')[1].split("</table>")[0]
    assert '<th scope="col">high</th>' in image and '<th scope="row">1024x1536</th>' in image
    assert "<td>0.15</td>" in image and "Other sizes</span> 0.06" in section
    assert '<td class="num">0.15</td>' in section and '<td class="num">0.03</td>' in section
    assert "4 s, 8 s" in section
    assert "Retired Model" not in text
    assert ("Create a key" in text) == (role not in (Role.VIEWER, Role.FINANCE))


def test_exclusive_groups_appear_only_when_granted(world, client_for, catalogue):
    _, exclusive = catalogue
    client = client_for(world.owner)
    text = client.get(reverse("keys:groups")).text
    assert "Enterprise" not in text and "Secret Lab" not in text

    GroupGrant.objects.create(account=world.account, group=exclusive)
    text = client.get(reverse("keys:groups")).text
    section = text.split('id="group-enterprise"')[1]
    assert "Exclusive" in section and "\N{MULTIPLICATION SIGN}0.85" in section
    assert '<td class="num">2.55</td>' in section  # 3 credits times 0.85
    assert "Image One" not in section  # only the group's own models
    assert "Secret Lab" not in text


def test_a_grant_to_another_account_shows_nothing_here(world, client_for, catalogue):
    _, exclusive = catalogue
    GroupGrant.objects.create(account=world.outsider_account, group=exclusive)
    assert "Enterprise" not in client_for(world.owner).get(reverse("keys:groups")).text
    assert "Enterprise" in client_for(world.outsider).get(reverse("keys:groups")).text


def test_no_groups_yet(world, client_for):
    text = client_for(world.viewer).get(reverse("keys:groups")).text
    assert "No routing groups yet" in text


def test_group_names_and_descriptions_are_escaped(world, client_for):
    make_group("hostile", name="<b>Bold</b>", description="<img src=x onerror=alert(1)>")
    text = client_for(world.owner).get(reverse("keys:groups")).text
    assert "<b>Bold</b>" not in text and "&lt;b&gt;Bold&lt;/b&gt;" in text
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_models_and_pricing_is_in_the_navigation(world, client_for):
    text = client_for(world.developer).get(reverse("keys:groups")).text
    nav = text.split('aria-label="Sections"')[1].split("</nav>")[0]
    assert nav.index("API keys") < nav.index("Models &amp; pricing") < nav.index("Usage")
    assert 'href="/groups/" class="nav-item is-active" aria-current="page"' in nav
