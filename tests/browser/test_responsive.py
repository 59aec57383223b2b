"""Every console page, and allauth's pages logged out, at 360, 390 and 1440 px, light and dark:
no page wider than the screen, no console error, no CSP violation; the create-key dialog fits
the screen; the dashboard's chart opens on its latest days; the theme switch is remembered and
applied before the page paints. Screenshots of each page at 390 and 1440 px (light and dark)
go to var/screenshots/<page>-<width>[-dark].png.

One browser, one login, one navigation per page: the widths and colour schemes are applied to
the loaded page, which is what a phone turned sideways or a system switching to dark does."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Project, User
from alerts import services as alerts
from alerts.models import ChannelKind, RuleKind
from billing.models import Payment, PaymentStatus
from catalogue.models import AIModel
from console.demo import seed_demo
from generation import services
from keys.selectors import api_keys_for_account
from tests.browser.conftest import SCREENSHOTS
from tests.factories import PASSWORD, UserFactory
from tests.tasks import run_until_done

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (360, 390, 1440)
SHOT_WIDTHS = (390, 1440)

# Collects what the page reports: CSP violations (the event, not only the console line) and
# whether the theme was on <html> before <body> existed (set by a blocking script in <head>).
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
window.__themeBeforeBody = null;
new MutationObserver(function (changes, observer) {
  if (document.body) {
    window.__themeBeforeBody = document.documentElement.getAttribute("data-theme");
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest.fixture
def demo_world(transactional_db, settings, sandbox_clock):
    """The demo owner (staff, for the operations pages) with a week of usage, a completed video
    task, an alert channel and rule, and a user with two-factor sign-in; the paths of every
    console page. (Set up before the browser starts: Playwright runs an event loop in this
    thread, where the ORM's sync calls are refused.)"""
    settings.BYTESPIKE_PUBLIC_URL = ""
    demo = seed_demo(history_days=7)
    user = User.objects.get(email=demo["email"])
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    key = api_keys_for_account(user.memberships.get().account).order_by("created_at").first()
    video_key = next(
        k for k in api_keys_for_account(key.account) if k.group.slug == "gemini-default"
    )
    task = services.task_submit(
        account_id=key.account_id,
        api_key_id=video_key.pk,
        model=AIModel.objects.get(slug="veo-3-fast"),
        multiplier=video_key.group.rate_multiplier,
        params={"prompt": "A lighthouse at dusk [sandbox:seconds=0.3]"},
    ).task
    run_until_done(task, sandbox_clock)
    channel, _ = alerts.channel_create(
        account=key.account, actor=user, kind=ChannelKind.EMAIL, name="Finance team",
        target="finance@example.com",
    )  # fmt: skip
    rule = alerts.rule_create(
        account=key.account, actor=user, kind=RuleKind.BALANCE_BELOW, channels=[channel],
        threshold=1_000_000,
    )  # fmt: skip
    # A paid top-up (the top-up page's recent payments) and a soft project budget (the Budgets
    # page's projects): tables with rows, on phones too.
    Payment.objects.create(
        account=key.account, provider="sandbox", amount=25_000_000, created_by=user,
        status=PaymentStatus.PAID, paid_at=timezone.now(), provider_payment_id="sbx_responsive",
    )  # fmt: skip
    Project.objects.filter(pk=key.project_id).update(monthly_budget=500_000_000, budget_hard=False)
    pages = {
        "dashboard": reverse("console:dashboard"),
        "keys": reverse("keys:keys"),
        "key-create": reverse("keys:key-create"),
        "key-detail": reverse("keys:key-detail", args=[key.public_id]),
        "management-keys": reverse("keys:management-keys"),
        "groups": reverse("keys:groups"),
        "wallet": reverse("billing:wallet"),
        "top-up": reverse("billing:top-up"),
        "budgets": reverse("billing:budgets"),
        "statements": reverse("billing:statements"),
        "statement": reverse("billing:statement", args=[f"{timezone.now():%Y-%m}"]),
        "projects": reverse("keys:projects"),
        "project-detail": reverse("keys:project-detail", args=[key.project.public_id]),
        "usage": reverse("billing:usage"),
        "playground": reverse("generation:playground"),
        "tasks": reverse("generation:tasks"),
        "task-detail": reverse("generation:task-detail", args=[task.public_id]),
        "webhooks": reverse("generation:webhooks"),
        "team": reverse("accounts:team"),
        "settings": reverse("accounts:settings"),
        "audit": reverse("accounts:audit"),
        "alerts": reverse("alerts:alerts"),
        "alert-channel": reverse("alerts:channel-edit", args=[channel.public_id]),
        "alert-rule": reverse("alerts:rule-edit", args=[rule.public_id]),
        "welcome": reverse("accounts:welcome"),
        "operations": reverse("console:operations"),
        "channels": reverse("generation:channels"),
        "email": reverse("account_email"),
        "password": reverse("account_change_password"),
        "2fa": reverse("mfa_index"),
        "2fa-activate": reverse("mfa_activate_totp"),
    }
    two_factor = UserFactory(email="totp@example.com")
    TOTP.activate(two_factor, generate_totp_secret())
    return demo, pages


class Watched:
    """A page with its console errors collected."""

    def __init__(self, context):
        context.add_init_script(WATCH)
        self.page = context.new_page()
        self.errors: list[str] = []
        self.too_wide: list[str] = []
        self.page.on(
            "console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}")
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def check(self, name: str, *, dark: bool = False):
        """At every width: nothing wider than the screen; screenshots at 390 and 1440."""
        page = self.page
        page.emulate_media(color_scheme="dark" if dark else "light")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 844 if width < 1000 else 900})
            sizes = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth,"
                " document.body.scrollWidth]"
            )
            if sizes[0] > sizes[1] or sizes[2] > sizes[1]:
                self.too_wide.append(
                    f"{name} at {width} px{' (dark)' if dark else ''} is {sizes[0]} px wide:"
                    f" {self.widest()}"
                )
            broken = page.evaluate(
                """[...document.querySelectorAll(".stat-value")].filter(el => {
                    const size = parseFloat(getComputedStyle(el).fontSize);
                    return el.getBoundingClientRect().height > size * 2
                      || el.scrollWidth > el.clientWidth + 1;
                  }).map(el => el.textContent.trim())"""
            )
            if broken:
                self.too_wide.append(f"{name} at {width} px: figures broken or cut: {broken}")
            if width in SHOT_WIDTHS:
                suffix = "-dark" if dark else ""
                page.screenshot(path=SCREENSHOTS / f"{name}-{width}{suffix}.png", full_page=True)
        assert page.evaluate("window.__csp") == [], name
        assert self.errors == [], name

    def widest(self):
        """What sticks out furthest to the right (for the failure message)."""
        return self.page.evaluate(
            """() => {
              let best = null, right = 0;
              const inScroller = (el) => {
                for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
                  if (getComputedStyle(up).overflowX !== "visible") return true;
                }
                return false;
              };
              for (const el of document.querySelectorAll("body *")) {
                if (inScroller(el)) continue;
                const r = el.getBoundingClientRect().right;
                if (r >= right) { right = r; best = el; }
              }
              return best && [best.tagName, best.className, Math.round(right)];
            }"""
        )


def test_every_page_fits_phone_and_desktop_screens_in_light_and_dark(
    demo_world, live_server, browser
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    demo, pages = demo_world

    context = browser.new_context(viewport={"width": 360, "height": 844})
    context.set_default_timeout(15_000)
    watched = Watched(context)
    page = watched.page

    # Logged out: sign in, sign up, password reset, and the second step of a 2FA sign-in.
    page.goto(f"{live_server.url}{reverse('account_login')}")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_text("Remember me", exact=True)).to_be_visible()
    watched.check("login")
    watched.check("login", dark=True)
    page.goto(f"{live_server.url}{reverse('account_signup')}")
    expect(page.get_by_role("button", name="Sign up", exact=True)).to_be_visible()
    watched.check("signup")
    page.goto(f"{live_server.url}{reverse('account_reset_password')}")
    watched.check("password-reset")
    page.goto(f"{live_server.url}{reverse('account_login')}")
    page.get_by_label("Email").fill("totp@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    watched.check("2fa-authenticate")
    watched.check("2fa-authenticate", dark=True)
    context.clear_cookies()

    # The demo owner, once; then every console page.
    page.goto(f"{live_server.url}{reverse('account_login')}")
    page.get_by_label("Email").fill(demo["email"])
    page.get_by_label("Password").fill(demo["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}")
        watched.check(name)
        watched.check(name, dark=True)
    assert watched.too_wide == [], "\n".join(watched.too_wide)

    # The dashboard's chart opens on its latest days (scrolled to its right end on a phone).
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="light")
    page.goto(f"{live_server.url}{pages['dashboard']}")
    chart = page.locator(".chart").first
    scroll = chart.evaluate("c => [c.scrollLeft, c.scrollWidth - c.clientWidth]")
    assert scroll[1] > 0, "the chart does not scroll at 390 px: nothing to check"
    assert scroll[0] >= scroll[1] - 1, scroll

    # The keys list on a phone: one card a key, its spend and its Revoke button on the screen.
    page.goto(f"{live_server.url}{pages['keys']}")
    revoke = page.get_by_role("button", name="Revoke")
    expect(revoke).to_have_count(3)
    for button in revoke.all():
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    spend = page.locator(".keys-table td[data-label='Spend 30 d']")
    expect(spend).to_have_count(3)
    for cell in spend.all():
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box

    # The create-key dialog fits the phone's screen.
    page.get_by_role("link", name="Create key").first.click()
    dialog = page.get_by_role("dialog", name="Create an API key")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box
    page.screenshot(path=SCREENSHOTS / "key-create-dialog-390.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 360, "height": 640})
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= 640, box
    expect(dialog.get_by_role("button", name="Create key")).to_be_in_viewport()
    page.set_viewport_size({"width": 390, "height": 844})
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # The theme switch: dark is remembered by this browser and applied before <body> exists.
    page.get_by_role("radio", name="Dark").check()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")  # live, no reload
    page.reload()
    assert page.evaluate("window.__themeBeforeBody") == "dark"
    expect(page.get_by_role("radio", name="Dark")).to_be_checked()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(245, 246, 250)", background  # not the light page colour
    # System again: nothing stored, the system's setting decides, and so does its change.
    page.get_by_role("radio", name="System").check()
    page.reload()
    assert page.evaluate("window.__themeBeforeBody") == "light"
    page.emulate_media(color_scheme="dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")  # live, no reload
    page.reload()
    assert page.evaluate("window.__themeBeforeBody") == "dark"
    expect(page.get_by_role("radio", name="System")).to_be_checked()

    # Copy where the browser has no clipboard API (plain HTTP on a LAN address), then where it
    # refuses: the text is selected for the keyboard instead, and nothing throws.
    page.goto(f"{live_server.url}{pages['key-detail']}")
    key_id = page.locator("#key-public-id").inner_text()
    copy = page.locator("button[data-copy='#key-public-id']")  # its name changes
    live = page.locator("#live-region")
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    copy.click()
    expect(copy).to_contain_text("Selected")
    expect(live).to_contain_text("the text is selected, press Ctrl+C or Cmd+C")
    assert page.evaluate("String(window.getSelection())") == key_id
    page.reload()
    page.evaluate(
        "() => { navigator.clipboard.writeText = () =>"
        " Promise.reject(new DOMException('Write permission denied.', 'NotAllowedError')); }"
    )
    copy.click()
    expect(live).to_contain_text("the text is selected")
    assert page.evaluate("String(window.getSelection())") == key_id
    # Where the browser allows it, the clipboard holds the text.
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.reload()
    copy.click()
    expect(live).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key_id

    assert page.evaluate("window.__csp") == [] and watched.errors == []
    context.close()
