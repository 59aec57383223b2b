"""The task card (live, polling until terminal), cancel from the card, the tasks list with its
filters and paging, the task detail page, and the dashboard's recent tasks; for every role and
for another account."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.invariants import wallet_problems
from billing.models import Hold, Wallet
from catalogue.models import AIModel
from generation import services
from generation.models import CallbackAttempt, CallbackDelivery, Task
from tests.factories import funded_key, issue_key
from tests.tasks import run_until_done

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
QUICK = "[sandbox:seconds=0.3]"
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_XSS = '<img src=x onerror="alert(2)">'
IMG_ESCAPED = "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
ROLES = ["owner", "admin", "developer", "viewer"]


@pytest.fixture
def key(world, settings):
    settings.BYTESPIKE_PUBLIC_URL = "http://testserver"
    return funded_key(world.account, world.owner, group="gemini-default", name="Render")[0]


def submit(world, key, prompt="A lighthouse", model="veo-3-fast", **params) -> Task:
    """A task through the service the API and the playground use."""
    model = AIModel.objects.get(slug=model)
    return services.task_submit(
        account_id=world.account.pk,
        api_key_id=key.pk,
        model=model,
        multiplier=key.group.rate_multiplier,
        params={"prompt": prompt, **params},
    ).task


def card(client, task, **headers):
    return client.get(reverse("generation:task-card", args=[task.public_id]), headers=headers)


def root_of(html: str) -> str:
    """The first tag of a fragment."""
    return re.search(r"<(article|tr)\b[^>]*>", html)[0]


# --- The card --------------------------------------------------------------------------------


def test_the_card_polls_while_running_and_stops_when_terminal(
    world, key, client_for, sandbox_clock
):
    client = client_for(world.owner)
    task = submit(world, key, f"A lighthouse {QUICK}")
    pending = card(client, task, **HTMX)
    assert pending.status_code == 200
    root = root_of(pending.text)
    assert f'hx-get="/tasks/{task.public_id}/card/"' in root
    assert 'hx-trigger="every 2s"' in root and 'hx-swap="outerHTML"' in root
    assert 'data-status="pending"' in root and 'data-progress="0"' in root
    assert f'id="task-cancel-{task.public_id}"' in pending.text

    services.task_advance(task.pk, task.lease)  # claimed and submitted upstream
    running = card(client, task, **HTMX)
    assert running.status_code == 200 and 'data-status="running"' in root_of(running.text)
    assert 'hx-trigger="every 2s"' in root_of(running.text)

    task = run_until_done(task, sandbox_clock)
    assert task.status == "completed"
    done = card(client, task, **HTMX)
    assert done.status_code == 286  # htmx stops polling
    root = root_of(done.text)
    assert "hx-trigger" not in root and "hx-get" not in root
    assert 'data-status="completed"' in root and 'data-progress="100"' in root
    video = re.search(r"<video[^>]*>", done.text)[0]
    assert 'controls preload="metadata"' in video and 'src="/files/' in video
    assert "Credits used" in done.text and "task-cancel" not in done.text
    src = re.search(r'src="(/files/[^"]+)"', video)[1]
    assert client.get(src).status_code == 200


def test_a_card_first_rendered_terminal_never_polls(world, key, client_for, sandbox_clock):
    task = run_until_done(submit(world, key, f"A lighthouse {QUICK}"), sandbox_clock)
    page = client_for(world.owner).get(reverse("generation:task-detail", args=[task.public_id]))
    assert page.status_code == 200
    assert "every 2s" not in page.text and 'data-status="completed"' in page.text


def test_a_failed_task_shows_its_error_and_costs_nothing(world, key, client_for, sandbox_clock):
    task = run_until_done(submit(world, key, f"[sandbox:fail] {QUICK}"), sandbox_clock)
    done = card(client_for(world.owner), task, **HTMX)
    assert done.status_code == 286
    assert 'data-status="failed"' in done.text and "video_generation_failed" in done.text
    assert 'class="task-credits-used">0.00<' in done.text


def test_cancel_from_the_card_releases_the_hold(world, key, client_for):
    client = client_for(world.owner)
    task = submit(world, key)
    assert Wallet.objects.get(account=world.account).held == task.estimated_credits
    response = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert response.status_code == 200
    root = root_of(response.text)
    assert 'data-status="cancelled"' in root and "hx-trigger" not in root
    assert "task-cancel" not in response.text and "nothing was billed" in response.text
    assert "Task cancelled." in response["HX-Trigger"]
    task.refresh_from_db()
    assert task.status == "cancelled" and task.credits_used == 0
    assert Hold.objects.get(reference=task.public_id).status == "released"
    assert Wallet.objects.get(account=world.account).held == 0
    assert wallet_problems(world.account.pk) == []
    # Again: nothing changes (a terminal task is returned as it is).
    again = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert again.status_code == 200 and "already cancelled" in again["HX-Trigger"]


def test_cancel_without_htmx_goes_to_the_detail_page(world, key, client_for):
    task = submit(world, key)
    response = client_for(world.owner).post(
        reverse("generation:task-cancel", args=[task.public_id])
    )
    assert response.status_code == 302
    assert response.url == reverse("generation:task-detail", args=[task.public_id])
    task.refresh_from_db()
    assert task.status == "cancelled"


def test_a_viewer_sees_the_card_without_cancel_and_may_not_cancel(world, key, client_for):
    client = client_for(world.viewer)
    task = submit(world, key)
    shown = card(client, task, **HTMX)
    assert shown.status_code == 200 and "task-cancel" not in shown.text
    refused = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert refused.status_code == 403
    task.refresh_from_db()
    assert task.status == "pending"


def test_a_developer_may_not_cancel_a_task_of_a_key_they_did_not_create(world, key, client_for):
    # As with the key itself (403 to edit it): cancelling a task is using its key.
    client = client_for(world.developer)
    task = submit(world, key)  # the owner's key
    held = Wallet.objects.get(account=world.account).held
    for headers in ({}, HTMX):
        refused = client.post(
            reverse("generation:task-cancel", args=[task.public_id]), headers=headers
        )
        assert refused.status_code == 403
    task.refresh_from_db()
    assert task.status == "pending" and task.version == 1
    assert Hold.objects.get(reference=task.public_id).status == "open"
    assert Wallet.objects.get(account=world.account).held == held
    # They still see it, as they see the key, but without a Cancel button.
    shown = card(client, task, **HTMX)
    assert shown.status_code == 200 and "task-cancel" not in shown.text
    detail = client.get(reverse("generation:task-detail", args=[task.public_id]))
    assert detail.status_code == 200 and "task-cancel" not in detail.text


def test_a_developer_cancels_the_tasks_of_their_own_key(world, key, client_for):
    own = issue_key(world.account, key.group, actor=world.developer, name="Mine")[0]
    client = client_for(world.developer)
    task = submit(world, own)
    assert f'id="task-cancel-{task.public_id}"' in card(client, task, **HTMX).text
    response = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert response.status_code == 200 and "Task cancelled." in response["HX-Trigger"]
    task.refresh_from_db()
    assert task.status == "cancelled"
    assert Hold.objects.get(reference=task.public_id).status == "released"


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_cancel_any_task_even_one_without_a_key(world, key, client_for, role):
    own = issue_key(world.account, key.group, actor=world.developer, name="Theirs")[0]
    client = client_for(getattr(world, role))
    orphan = submit(world, own)
    Task.objects.filter(pk=orphan.pk).update(api_key=None)
    for task in (submit(world, own), orphan):
        response = client.post(reverse("generation:task-cancel", args=[task.public_id]))
        assert response.status_code == 302
        task.refresh_from_db()
        assert task.status == "cancelled"


def test_a_developer_may_not_cancel_a_task_without_a_key(world, key, client_for):
    task = submit(world, issue_key(world.account, key.group, actor=world.developer)[0])
    Task.objects.filter(pk=task.pk).update(api_key=None)
    client = client_for(world.developer)
    # A task without a key is in no project, so it is not the developer's to see: a 404.
    refused = client.post(reverse("generation:task-cancel", args=[task.public_id]))
    assert refused.status_code == 404
    task.refresh_from_db()
    assert task.status == "pending"
    assert card(client, task, **HTMX).status_code == 404
    # An admin sees it, and may cancel it.
    assert "task-cancel" in card(client_for(world.admin), task, **HTMX).text


def test_cancel_needs_the_csrf_token(world, key):
    task = submit(world, key)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.owner)
    response = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == "pending"


def test_another_accounts_task_is_404_everywhere(world, key, client_for):
    task = submit(world, key)
    client = client_for(world.outsider)
    for name in ("task-card", "task-row", "task-detail"):
        assert client.get(reverse(f"generation:{name}", args=[task.public_id])).status_code == 404
    cancel = client.post(reverse("generation:task-cancel", args=[task.public_id]), headers=HTMX)
    assert cancel.status_code == 404
    task.refresh_from_db()
    assert task.status == "pending"
    assert task.public_id not in client.get(reverse("generation:tasks")).text


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_the_task_pages(world, key, client_for, role):
    task = submit(world, key)
    client = client_for(getattr(world, role))
    for url in (
        reverse("generation:tasks"),
        reverse("generation:task-detail", args=[task.public_id]),
        reverse("generation:task-card", args=[task.public_id]),
        reverse("generation:task-row", args=[task.public_id]),
    ):
        assert client.get(url).status_code == 200, url


def test_the_task_pages_need_a_login(world, key, client):
    task = submit(world, key)
    for url in (
        reverse("generation:tasks"),
        reverse("generation:task-detail", args=[task.public_id]),
        reverse("generation:task-card", args=[task.public_id]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login/" in response.url


# --- HTML in prompts and params is text --------------------------------------------------------


def test_html_in_prompts_and_params_is_shown_as_text(world, key, client_for):
    AIModel.objects.filter(slug="veo-3-fast").update(display_name=f"Veo {XSS}")
    task = submit(world, key, f"A fox {XSS}", negative_prompt=IMG_XSS)
    client = client_for(world.owner)
    pages = {
        "card": card(client, task, **HTMX).text,
        "row": client.get(reverse("generation:task-row", args=[task.public_id])).text,
        "list": client.get(reverse("generation:tasks")).text,
        "detail": client.get(reverse("generation:task-detail", args=[task.public_id])).text,
        "dashboard": client.get(reverse("console:dashboard")).text,
    }
    for name, html in pages.items():
        assert XSS not in html and IMG_XSS not in html, name
        assert ESCAPED in html, name
    # The params block shows the prompt and the negative prompt, escaped, as JSON.
    params = re.search(r'<pre id="task-params">(.*?)</pre>', pages["detail"], re.S)[1]
    assert ESCAPED in params and IMG_ESCAPED.replace("&quot;", "\\&quot;") in params


# --- The list --------------------------------------------------------------------------------


def make_tasks(world, key, count: int, **fields) -> list[Task]:
    """Tasks written directly (no holds): for the list's filters and paging."""
    model = fields.pop("model", None) or AIModel.objects.get(slug="veo-3-fast")
    now = timezone.now()
    return [
        Task.objects.create(
            account=world.account,
            api_key=key,
            model=model,
            request_digest=f"d{n}",
            params={"prompt": f"Task number {n}", "duration": 4},
            created_at=now - timedelta(minutes=n),
            **fields,
        )
        for n in range(count)
    ]


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="task-row-(task_\w+)"', html)


def test_the_list_pages_by_25_newest_first(world, key, client_for):
    tasks = make_tasks(world, key, 30)
    client = client_for(world.owner)
    first = client.get(reverse("generation:tasks"))
    assert rows(first.text) == [task.public_id for task in tasks[:25]]
    assert "Page 1 of 2" in first.text and 'href="/tasks/?page=2"' in first.text
    second = client.get(reverse("generation:tasks") + "?page=2")
    assert rows(second.text) == [task.public_id for task in tasks[25:]]


def test_filters_live_in_the_url_and_answer_the_list_fragment(world, key, client_for):
    other_key, _ = issue_key(world.account, key.group, actor=world.owner, name="Other key")
    imagen = AIModel.objects.get(slug="imagen-4")
    done = make_tasks(world, key, 2, status="completed", progress=100, credits_used=10)
    pending = make_tasks(world, key, 3)
    images = make_tasks(world, other_key, 1, model=imagen)
    client = client_for(world.owner)
    url = reverse("generation:tasks")

    by_status = client.get(f"{url}?status=completed", headers={**HTMX, "HX-Target": "tasks-list"})
    assert by_status.text.lstrip().startswith('<section class="card card-flush" id="tasks-list"')
    assert "<html" not in by_status.text
    assert set(rows(by_status.text)) == {task.public_id for task in done}
    assert 'hx-push-url="true"' in by_status.text
    assert by_status["HX-Push-Url"] == f"{url}?status=completed"
    assert '<option value="completed" selected>' in by_status.text

    by_model = client.get(f"{url}?model=imagen-4")
    assert rows(by_model.text) == [images[0].public_id]
    by_key = client.get(f"{url}?key={other_key.public_id}")
    assert rows(by_key.text) == [images[0].public_id]
    both = client.get(f"{url}?status=pending&key={key.public_id}")
    assert set(rows(both.text)) == {task.public_id for task in pending}
    # An unknown status is no filter; a key of no task matches nothing.
    assert len(rows(client.get(f"{url}?status=bogus").text)) == 6
    empty = client.get(f"{url}?key=key_nope")
    assert rows(empty.text) == [] and "No tasks match these filters" in empty.text


def test_only_rows_that_are_not_terminal_poll(world, key, client_for):
    (done,) = make_tasks(world, key, 1, status="completed", progress=100, credits_used=10)
    (running,) = make_tasks(world, key, 1, status="running", progress=40)
    client = client_for(world.owner)
    html = client.get(reverse("generation:tasks")).text
    done_row = re.search(rf'<tr id="task-row-{done.public_id}"[^>]*>', html)[0]
    running_row = re.search(rf'<tr id="task-row-{running.public_id}"[^>]*>', html)[0]
    assert "hx-trigger" not in done_row
    assert 'hx-trigger="every 2s"' in running_row and 'hx-swap="outerHTML"' in running_row
    assert f'hx-get="/tasks/{running.public_id}/row/"' in running_row
    assert client.get(reverse("generation:task-row", args=[running.public_id])).status_code == 200
    ended = client.get(reverse("generation:task-row", args=[done.public_id]), headers=HTMX)
    assert ended.status_code == 286 and "hx-trigger" not in root_of(ended.text)


# --- The detail page -------------------------------------------------------------------------


def delivered(task, *, codes=(500, 200)) -> CallbackDelivery:
    delivery = CallbackDelivery.objects.create(
        task=task,
        webhook_id=f"msg_{task.public_id}",
        event_type="task.completed",
        url="https://hooks.example.com/bytespike",
        payload={"type": "task.completed"},
        status="delivered",
        attempts=len(codes),
        last_status_code=codes[-1],
    )
    for n, code in enumerate(codes):
        CallbackAttempt.objects.create(
            delivery=delivery,
            status_code=code,
            duration_ms=40 + n,
            attempted_at=timezone.now() + timedelta(seconds=n + 1),
        )
    return delivery


def test_the_detail_page_has_the_timeline_params_object_and_deliveries(
    world, key, client_for, sandbox_clock
):
    task = run_until_done(submit(world, key, f"A lighthouse {QUICK}", duration=4), sandbox_clock)
    delivery = delivered(task)
    html = (
        client_for(world.owner).get(reverse("generation:task-detail", args=[task.public_id])).text
    )
    timeline = re.search(r'<ol class="timeline task-timeline".*?</ol>', html, re.S)[0]
    titles = re.findall(r'<span class="strong">([^<]+)</span>', timeline)
    assert titles == ["Submitted", "Started", "Completed", "Callback attempt", "Callback attempt"]
    assert "answered 500 in 40 ms" in timeline and "answered 200 in 41 ms" in timeline
    assert "&quot;duration&quot;: 4" in html and "&quot;task_id&quot;: &quot;" in html
    assert '<video class="task-video" controls preload="metadata"' in html
    redeliver = reverse("generation:delivery-redeliver", args=[delivery.webhook_id])
    assert f'action="{redeliver}"' in html
    assert reverse("generation:delivery-detail", args=[delivery.webhook_id]) in html


@pytest.mark.parametrize(("role", "may"), [("owner", True), ("admin", True),
                                           ("developer", False), ("viewer", False)])  # fmt: skip
def test_only_owners_and_admins_get_the_redeliver_button(
    world, key, client_for, role, may, sandbox_clock
):
    task = run_until_done(submit(world, key, f"A lighthouse {QUICK}"), sandbox_clock)
    delivery = delivered(task)
    html = (
        client_for(getattr(world, role))
        .get(reverse("generation:task-detail", args=[task.public_id]))
        .text
    )
    redeliver = reverse("generation:delivery-redeliver", args=[delivery.webhook_id])
    assert (redeliver in html) is may
    assert '<td class="num">200</td>' in html  # the last status code, for everyone


def test_the_detail_page_of_a_running_task_polls_its_card(world, key, client_for):
    task = submit(world, key)
    html = (
        client_for(world.owner).get(reverse("generation:task-detail", args=[task.public_id])).text
    )
    assert 'hx-trigger="every 2s"' in root_of(html[html.index('<article class="card task-card"') :])
    assert "submitted without a <code>callback_url</code>" in html


# --- The dashboard ---------------------------------------------------------------------------


def test_the_dashboard_lists_the_last_five_tasks_with_their_status(world, key, client_for):
    tasks = make_tasks(world, key, 7)
    Task.objects.filter(pk=tasks[0].pk).update(status="completed", progress=100, credits_used=1)
    html = client_for(world.viewer).get(reverse("console:dashboard")).text
    section = re.search(r'<section class="card card-flush" id="recent-tasks".*?</section>', html,
                        re.S)[0]  # fmt: skip
    linked = re.findall(r'href="/tasks/(task_\w+)/"', section)
    assert linked == [task.public_id for task in tasks[:5]]
    assert section.count('class="badge task-status') == 5
    assert "task-status-completed" in section and "task-status-pending" in section


def test_the_dashboard_without_tasks_says_so(world, client_for):
    html = client_for(world.owner).get(reverse("console:dashboard")).text
    assert "No tasks yet" in html
