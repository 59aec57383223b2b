"""The playground and the task pages in Chromium: a streamed chat answer, images, a video task
watched from pending to completed (and no poll after), a pending task cancelled, and a viewer's
disabled controls.

The console runs under uvicorn (ASGI) in a thread, on the test database, as in production: the
chat's answer is an async stream, which only an ASGI server sends as it is written (a WSGI
server, like pytest-django's live_server, would gather it first). Tasks run on a real Celery
worker (the ``celery_worker`` fixture) where the test says so.
"""

import re
import threading
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from accounts.models import Role
from billing.models import UsageRecord, Wallet
from catalogue.models import AIModel
from generation.models import Task
from tests.factories import (
    PASSWORD,
    AccountFactory,
    MembershipFactory,
    UserFactory,
    funded_key,
)
from tests.factories import issue_key as make_key
from tests.processes import free_port, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(transactional_db, settings):
    """The console under uvicorn, in a thread of this process; its base URL."""
    import uvicorn
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    settings.BYTESPIKE_PUBLIC_URL = ""
    application = ASGIStaticFilesHandler(get_asgi_application())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            application, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 15, interval=0.05), "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def team(db):
    """An owner with a funded account and a key of the Gemini group (text, image and video
    models), and a viewer in the same account."""
    owner = UserFactory(email="owner@example.com", name="Olive Owner")
    viewer = UserFactory(email="viewer@example.com", name="Vic Viewer")
    account = AccountFactory(name="Studio Co")
    MembershipFactory(account=account, user=owner, role=Role.OWNER)
    MembershipFactory(account=account, user=viewer, role=Role.VIEWER)
    key, _ = funded_key(account, owner, group="gemini-default", credits=20, name="Studio key")
    return owner, viewer, account, key


def sign_in(page, site, email):
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # What the Content Security Policy blocked (an inline style or script) is a bug too.
    page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
    page.goto(f"{site}/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return errors


def open_playground(page, site, key, model):
    page.goto(f"{site}{reverse('generation:playground')}?key={key.public_id}&model={model}")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()


def test_switching_key_and_model_swaps_the_panel_without_errors(site, page, team):
    owner, _, account, key = team
    make_key(account, AIModel.objects.get(slug="gpt-4.1").groups.get(slug="default"),
             actor=owner, name="Second key")  # fmt: skip
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "veo-3-fast")
    page.get_by_label("Key", exact=True).select_option(label="Second key · OpenAI")
    expect(page.locator("#playground-panel")).to_have_attribute("data-family", "text")
    page.get_by_label("Key", exact=True).select_option(label="Studio key · Gemini")
    for model, family in (("Imagen 4", "image"), ("Veo 3 Fast", "video")):
        page.get_by_label("Model", exact=True).select_option(label=model)
        expect(page.locator("#playground-panel")).to_have_attribute("data-family", family)
    assert errors == []


def test_a_chat_answer_streams_in_then_shows_its_usage(site, page, shot, team):
    owner, _, account, key = team
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "gemini-2.5-flash")
    expect(page.locator("#playground-panel")).to_have_attribute("data-family", "text")
    shot(page, "playground-01-chat")

    page.get_by_label("Message", exact=True).fill(
        "Tell me about gateways [sandbox:words=60] [sandbox:delay=40]"
    )
    page.get_by_label("Message", exact=True).press("Enter")  # Enter sends
    answer = page.locator(".chat-msg-assistant .chat-text")
    expect(answer).not_to_be_empty()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    # The page notes the answer's length at each change to it, as it happens.
    answer.evaluate(
        """node => {
            window.answerLengths = [node.textContent.length];
            new MutationObserver(() => window.answerLengths.push(node.textContent.length))
                .observe(node, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.wait_for_function("() => window.answerLengths.length >= 4")
    shot(page, "playground-02-chat-streaming")
    usage = page.locator(".chat-usage [data-usage]")
    expect(usage).to_contain_text("tokens in")
    # It grew over several changes before it was done: streamed, not delivered whole.
    lengths = page.evaluate("window.answerLengths")
    assert lengths == sorted(lengths)
    growing = [n for n in dict.fromkeys(lengths) if n > 0]
    assert len(growing) >= 4, lengths
    assert growing[0] < len(answer.text_content())

    expect(usage).to_contain_text("credits")
    expect(page.locator("#live-region")).to_have_text("Answer complete.")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    record = UsageRecord.objects.get(account=account)
    assert record.protocol == "playground" and record.api_key_id == key.pk and record.stream
    assert usage.get_attribute("data-credits") == str(record.credits)
    assert len(answer.text_content().split()) >= 60
    shot(page, "playground-03-chat-done")

    # Multi-turn: the second answer follows the first; "New chat" clears the conversation.
    page.get_by_label("Message", exact=True).fill("And then? [sandbox:words=5]")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".chat-msg-assistant .chat-usage [data-usage]")).to_have_count(2)
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".chat-msg")).to_have_count(0)
    expect(page.get_by_label("Message", exact=True)).to_be_focused()
    assert errors == []


def test_a_stopped_answer_is_billed_for_what_was_written(site, page, team):
    owner, _, account, key = team
    sign_in(page, site, owner.email)
    open_playground(page, site, key, "gemini-2.5-flash")
    page.get_by_label("Message", exact=True).fill("Go on [sandbox:words=400] [sandbox:delay=30]")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".chat-msg-assistant .chat-text")
    expect(answer).to_contain_text(re.compile(r"(\S+\s+){10}"))  # some of it written
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".chat-note")).to_contain_text("Stopped")
    expect(page.locator(".chat-usage [data-usage]")).to_contain_text("credits", timeout=10_000)
    record = UsageRecord.objects.get(account=account)
    assert 0 < record.output_tokens < 400
    assert Wallet.objects.get(account=account).held == 0


def test_a_chat_the_wallet_cannot_cover_offers_a_top_up(site, page, team, settings):
    from billing.services import wallet_admin_adjust

    settings.BYTESPIKE_PAYMENT_PROVIDER = "sandbox"
    owner, _, account, key = team
    balance = Wallet.objects.get(account=account).balance
    wallet_admin_adjust(account=account, amount=-balance, actor=owner, note="spent")
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "gemini-2.5-flash")
    page.get_by_label("Message", exact=True).fill("Hello")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-error")).to_contain_text("available")
    top_up = page.locator(".chat-top-up").get_by_role("link", name="Top up")
    expect(top_up).to_be_visible()
    top_up.click()
    expect(page.get_by_role("heading", name="Top up", exact=True)).to_be_visible()
    assert errors == []


def test_generated_images_appear(site, page, shot, team):
    owner, _, account, key = team
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "imagen-4")
    expect(page.locator("#playground-panel")).to_have_attribute("data-family", "image")
    page.locator("#image-prompt").fill("A red fox in the snow")
    page.get_by_label("Images", exact=True).first.select_option("2")
    expect(page.locator("#now-estimate")).to_contain_text("0.08")
    page.get_by_role("button", name="Run now").click()
    images = page.locator(".image-results img")
    expect(images).to_have_count(2)
    for image in images.all():
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0
    expect(page.locator("#live-region")).to_have_text("2 images ready.")
    results = page.locator(".image-results")
    expect(results.get_by_role("link", name="Download image 1")).to_be_visible()
    assert UsageRecord.objects.get(account=account).images == 2
    shot(page, "playground-04-images")
    assert errors == []


def test_a_slow_image_run_shows_its_progress_and_its_success_clears_an_earlier_error(
    site, page, shot, team, settings
):
    owner, _, _, key = team
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "imagen-4")
    form = page.locator("#image-form")

    # Without a prompt the API's "Missing required parameter: 'prompt'." is said in the form's
    # words, on the field.
    page.get_by_role("button", name="Run now").click()
    expect(form.locator("#image-prompt-error")).to_have_text("Enter a prompt.")
    expect(page.locator("#image-prompt")).to_have_attribute("aria-invalid", "true")

    # A slow upstream: the button spins, a bar and the seconds elapsed show while it runs.
    settings.BYTESPIKE_SANDBOX_LATENCY_MS = 2500
    page.locator("#image-prompt").fill("A red fox in the snow")
    page.get_by_role("button", name="Run now").click()
    expect(form).to_have_class(re.compile(r"\bis-running\b"))
    expect(form.locator(".run-progress")).to_be_visible()
    expect(form.locator("[data-run-elapsed]")).to_have_text(re.compile(r"^Running… [1-9]\d* s$"))
    shot(page, "playground-05-running")

    # Done: the images, no progress left, and no trace of the earlier error.
    expect(page.locator(".image-results img")).to_have_count(1)
    expect(form.locator(".run-status")).to_have_count(0)
    expect(form).not_to_have_class(re.compile(r"\bis-running\b"))
    expect(form.locator(".field-errors, .form-errors")).to_have_count(0)
    expect(page.locator("#image-prompt")).not_to_have_attribute("aria-invalid", "true")
    assert errors == []


def test_a_video_task_goes_from_pending_to_completed_and_stops_polling(
    site, page, shot, team, celery_worker
):
    owner, _, account, key = team
    # The page's timers run on a clock the test can run ahead (it keeps time until paused).
    page.clock.install()
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "veo-3-fast")
    expect(page.locator("#playground-panel")).to_have_attribute("data-family", "video")
    polls = []  # (time, url) of every request for a task card
    done_at = []
    page.on("request", lambda r: "/card/" in r.url and polls.append((time.monotonic(), r.url)))
    page.on("response", lambda r: r.status == 286 and done_at.append(time.monotonic()))
    # And the page counts the card requests htmx makes, as it makes them.
    page.evaluate(
        """() => {
            window.cardRequests = 0;
            document.addEventListener("htmx:beforeRequest", event => {
                if (event.detail.requestConfig.path.includes("/card/")) window.cardRequests++;
            });
        }"""
    )

    page.get_by_label("Prompt", exact=True).fill("A lighthouse at dusk [sandbox:seconds=3]")
    page.get_by_label("Duration").select_option("4")
    expect(page.locator("#task-estimate")).to_contain_text("0.60")
    page.get_by_role("button", name="Submit task").click()
    task_card = page.locator(".task-card")
    expect(task_card).to_have_count(1)
    # Each status in turn, as the card's polls show them (the worker runs the task meanwhile).
    expect(task_card).to_have_attribute("data-status", "pending")
    expect(task_card).to_have_attribute("data-status", "running", timeout=30_000)
    shot(page, "playground-05-video-running")
    expect(task_card).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(task_card).to_have_attribute("data-progress", "100")
    expect(page.locator("#live-region")).to_contain_text("task completed")
    video = task_card.locator("video")
    expect(video).to_have_attribute("preload", "metadata")
    page.wait_for_function("document.querySelector('.task-card video').readyState > 0")
    expect(task_card).to_contain_text("Credits used")
    expect(task_card.get_by_role("button", name="Cancel")).to_have_count(0)
    shot(page, "playground-06-video-completed")

    # The 286 stopped polling: with the page's clock run five polls' time (10 s) on, no card
    # request after it.
    assert done_at, "the terminal card was not answered with 286"
    asked = page.evaluate("window.cardRequests")
    page.clock.pause_at(page.evaluate("Date.now()") + 1)
    page.clock.run_for(10_000)
    assert page.evaluate("window.cardRequests") == asked
    page.clock.resume()
    late = [url for at, url in polls if at > done_at[-1]]
    assert late == [], late
    assert len(polls) >= 2 and asked >= 2  # it did poll while the task ran

    task = Task.objects.get(account=account)
    assert task.status == "completed" and task.api_key_id == key.pk
    assert Wallet.objects.get(account=account).held == 0

    # The tasks page and the task's page show it too.
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Tasks").click()
    row = page.locator(f"#task-row-{task.public_id}")
    expect(row).to_contain_text("Completed")
    expect(row).not_to_have_attribute("hx-trigger", "every 2s")
    shot(page, "tasks-01-list")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Veo 3 Fast task")).to_be_visible()
    expect(page.locator("#task-timeline")).to_contain_text("Completed")
    expect(page.locator("#task-params")).to_contain_text("A lighthouse at dusk")
    shot(page, "tasks-02-detail")
    assert errors == []


def test_a_pending_task_is_cancelled_and_its_hold_released(site, page, shot, team):
    # No worker runs in this test: the task stays pending until it is cancelled.
    owner, _, account, key = team
    errors = sign_in(page, site, owner.email)
    open_playground(page, site, key, "veo-3-fast")
    page.get_by_label("Prompt", exact=True).fill("A slow sunrise")
    page.get_by_role("button", name="Submit task").click()
    task_card = page.locator(".task-card")
    expect(task_card).to_have_attribute("data-status", "pending")
    task = Task.objects.get(account=account)
    assert Wallet.objects.get(account=account).held == task.estimated_credits > 0
    page.get_by_role("button", name=f"Cancel task {task.public_id}").click()
    expect(task_card).to_have_attribute("data-status", "cancelled")
    expect(task_card).to_contain_text("nothing was billed")
    # The cancel answer and the card's own poll both announce it; either may be last.
    expect(page.locator("#live-region")).to_have_text(re.compile(r"task cancelled\.$", re.I))
    shot(page, "playground-07-cancelled")

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Wallet").click()
    expect(page.locator("#wallet-held")).to_have_text("0.00")
    expect(page.locator("#wallet-available")).to_contain_text("20.00")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Tasks").click()
    page.get_by_label("Status").select_option("cancelled")
    expect(page).to_have_url(f"{site}/tasks/?status=cancelled")
    expect(page.locator(f"#task-row-{task.public_id}")).to_contain_text("Cancelled")
    shot(page, "tasks-03-cancelled")
    assert errors == []


def test_a_viewer_has_disabled_controls_and_a_forced_post_is_refused(site, page, shot, team):
    _, viewer, account, key = team
    errors = sign_in(page, site, viewer.email)
    open_playground(page, site, key, "veo-3-fast")
    expect(page.locator("#playground-readonly")).to_contain_text("Read-only")
    expect(page.get_by_label("Key", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Submit task")).to_be_disabled()
    expect(page.get_by_label("Prompt", exact=True)).to_be_disabled()
    shot(page, "playground-08-viewer")
    token = page.locator("#task-form [name=csrfmiddlewaretoken]").get_attribute("value")
    status = page.evaluate(
        """([url, token, key]) => {
            const body = new FormData();
            body.set("key", key); body.set("model", "veo-3-fast"); body.set("prompt", "Forced");
            return fetch(url, {method: "POST", body, headers: {"X-CSRFToken": token}})
                .then(response => response.status);
        }""",
        [reverse("generation:playground-task"), token, key.public_id],
    )
    assert status == 403
    open_playground(page, site, key, "gemini-2.5-flash")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    assert not Task.objects.filter(account=account).exists()
    assert errors == []
