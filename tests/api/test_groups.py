"""GET /api/v1/groups/available: public groups plus the exclusive ones granted to the caller's
account, each with its active models priced after the group's multiplier."""

from tests.api.conftest import assert_error, grant
from tests.factories import AIModelFactory, RoutingGroupFactory


def test_lists_public_and_granted_groups_with_their_active_models_and_prices(world, api):
    public = RoutingGroupFactory(slug="default", rate_multiplier="1.5", description="Everything")
    granted = RoutingGroupFactory(slug="vip", exclusive=True, rate_multiplier="0.8")
    RoutingGroupFactory(slug="secret", exclusive=True)  # exclusive, not granted: invisible
    grant(granted, world.account)
    AIModelFactory(
        slug="text-small",
        groups=[public, granted],
        display_name="Text Small",
        input_price=2_000_000,
        output_price=4_000_000,
        context_window=128_000,
        max_output_tokens=8_192,
    )
    AIModelFactory(
        slug="image-1",
        groups=[public],
        family="image",
        image_prices={"default": 40_000},
        context_window=0,
        max_output_tokens=0,
    )
    AIModelFactory(slug="retired", groups=[public], is_active=False)

    response = api.get("/api/v1/groups/available")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2 and body["page"] == 1 and body["page_size"] == 2
    groups = {group["slug"]: group for group in body["items"]}
    assert set(groups) == {"default", "vip"}
    default = groups["default"]
    assert default == {
        "id": public.pk,
        "slug": "default",
        "name": "Default",
        "description": "Everything",
        "rate_multiplier": 1.5,
        "exclusive": False,
        "models": [
            {
                "slug": "image-1",
                "display_name": "image-1",
                "family": "image",
                "context_window": 0,
                "max_output_tokens": 0,
                "pricing": {"unit": "image", "per_image": {"default": 0.06}},
            },
            {
                "slug": "text-small",
                "display_name": "Text Small",
                "family": "text",
                "context_window": 128_000,
                "max_output_tokens": 8_192,
                "pricing": {
                    "unit": "1M tokens",
                    "input": 3,
                    "output": 6,
                    "cache_read": 0,
                    "cache_write": 0,
                },
            },
        ],
    }
    vip = groups["vip"]
    assert vip["exclusive"] is True and vip["rate_multiplier"] == 0.8
    assert [m["slug"] for m in vip["models"]] == ["text-small"]
    assert vip["models"][0]["pricing"]["input"] == 1.6


def test_another_accounts_grant_stays_invisible(world, api, outsider_api):
    RoutingGroupFactory(slug="default")
    theirs = RoutingGroupFactory(slug="their-vip", exclusive=True)
    grant(theirs, world.outsider_account)

    ours = [group["slug"] for group in api.get("/api/v1/groups/available").json()["items"]]
    their = [
        group["slug"] for group in outsider_api.get("/api/v1/groups/available").json()["items"]
    ]

    assert ours == ["default"]
    assert their == ["default", "their-vip"]


def test_no_groups_is_an_empty_list(api):
    assert api.get("/api/v1/groups/available").json() == {
        "items": [],
        "total": 0,
        "page": 1,
        "page_size": 0,
    }


def test_needs_a_management_key(client):
    assert_error(client.get("/api/v1/groups/available"), 401, "invalid_api_key")
