"""Console pages for API keys, management keys, and the routing groups with their prices.

A key's secret is rendered exactly once: in the response to the request that issued or rolled
it. Those responses are marked ``no-store``; no page, row, message or log shows it again.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib import messages
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from accounts import permissions
from accounts.decorators import account_view
from accounts.selectors import projects_visible_to
from catalogue.models import AIModel, Family, RoutingGroup
from catalogue.pricing import apply_multiplier
from catalogue.selectors import models_in_group
from core.http import public_base_url
from core.money import format_credits, format_credits_exact
from keys import selectors, snippets, spend
from keys import services as keys
from keys.forms import ApiKeyCreateForm, ApiKeyEditForm, ManagementKeyCreateForm
from keys.models import ApiKey, KeyStatus

# Where a service's complaint about a field is shown on the console's forms.
CREATE_FIELDS = {"group_id": "group", "expires_at": "expires_in_days", "project_id": "project"}
EDIT_FIELDS = {"expires_at": "expires_on", "project_id": "project"}


# --- Presentation helpers ---------------------------------------------------------------------


UNLIMITED = "Unlimited"


def _credits_or(micros: int | None, none: str) -> str:
    return none if micros is None else format_credits(micros)


def _count_or(number: int | None, none: str) -> str:
    return none if number is None else intcomma(number)


@dataclass(frozen=True)
class KeyView:
    """An API key as the console shows it: labels, limits, spend, and what the viewer may do."""

    key: ApiKey
    can_manage: bool
    creator_label: str
    quota_label: str
    rate_limits: tuple[tuple[str, str], ...]  # (window, credits or "Unlimited")
    request_limits: tuple[tuple[str, str, str], ...]  # (name, unit, count or "Unlimited")
    has_request_limits: bool
    spend_30d: int | None = None  # None where the page shows no spend
    spend_total: int | None = None


def _creator_label(key: ApiKey) -> str:
    if key.created_via_key_id:
        return "API"
    if key.created_by:
        return key.created_by.email
    return "—"


def present_key(
    key: ApiKey, membership, *, spend_30d: int | None = None, spend_total: int | None = None
) -> KeyView:
    """The key as ``membership``'s member sees it; its spend only where the page shows it."""
    return KeyView(
        key=key,
        can_manage=permissions.can_manage_key(membership, key),
        creator_label=_creator_label(key),
        quota_label=_credits_or(key.quota, UNLIMITED),
        rate_limits=(
            ("5 hours", _credits_or(key.rate_limit_5h, UNLIMITED)),
            ("1 day", _credits_or(key.rate_limit_1d, UNLIMITED)),
            ("7 days", _credits_or(key.rate_limit_7d, UNLIMITED)),
        ),
        request_limits=(
            ("Requests per minute", "rpm", _count_or(key.rpm, UNLIMITED)),
            ("Tokens per minute", "tpm", _count_or(key.tpm, UNLIMITED)),
            ("Calls at once", "at once", _count_or(key.max_concurrent, UNLIMITED)),
        ),
        has_request_limits=any(
            value is not None for value in (key.rpm, key.tpm, key.max_concurrent)
        ),
        spend_30d=spend_30d,
        spend_total=spend_total,
    )


def present_keys_with_spend(account, api_keys: list[ApiKey], membership) -> list[KeyView]:
    """Each key with its spend over 30 days and lifetime (against its quota)."""
    spent = spend.reader().spend_by_key(account, api_keys)
    return [
        present_key(
            key,
            membership,
            spend_30d=spent[key.pk].last_30_days,
            spend_total=spent[key.pk].lifetime,
        )
        for key in api_keys
    ]


def _present_key_with_spend(request, key: ApiKey) -> KeyView:
    (shown,) = present_keys_with_spend(request.account, [key], request.membership)
    return shown


def _key_usage(request, key: ApiKey) -> dict:
    """A key's page shows its spend and its daily spend over the usage page's default period."""
    return spend.reader().usage_panel(request.account, key)


def multiplier_label(multiplier: Decimal) -> str:
    text = f"{Decimal(multiplier).normalize():f}"
    return f"\N{MULTIPLICATION SIGN}{text}"


QUALITY_ORDER = {"low": 0, "medium": 1, "standard": 1, "high": 2, "hd": 3}


def _image_prices(model, price) -> dict:
    """Image tiers ("<size>/<quality>") as a size-by-quality grid, plus the fallback price."""
    tiers = dict(model.image_prices or {})
    fallback = tiers.pop("default", None)
    grid: dict[str, dict[str, int]] = {}
    for tier, micros in tiers.items():
        size, _, quality = tier.partition("/")
        grid.setdefault(size, {})[quality or "any"] = micros
    qualities = sorted(
        {quality for row in grid.values() for quality in row},
        key=lambda quality: (QUALITY_ORDER.get(quality, 9), quality),
    )
    listed = {size: index for index, size in enumerate(model.sizes or [])}
    sizes = sorted(grid, key=lambda size: (listed.get(size, len(listed)), size))
    return {
        "qualities": qualities,
        "rows": [
            (size, [price(grid[size][q]) if q in grid[size] else "—" for q in qualities])
            for size in sizes
        ],
        "fallback": price(fallback) if fallback is not None else None,
    }


@dataclass(frozen=True)
class PricedModel:
    """A model of a routing group with its prices after the group's multiplier, as text."""

    model: AIModel
    prices: dict


def _group_entry(group: RoutingGroup) -> dict:
    """A group with its active models and their prices after the group's multiplier."""
    models = list(models_in_group(group.pk))
    multiplier = group.rate_multiplier

    def price(micros: int) -> str:
        return format_credits_exact(apply_multiplier(micros, multiplier))

    text, image, video = [], [], []
    for model in models:
        if model.family == Family.TEXT:
            prices = {
                "input": price(model.input_price),
                "output": price(model.output_price),
                "cache_read": price(model.cache_read_price),
                "cache_write": price(model.cache_write_price),
            }
            text.append(PricedModel(model, prices))
        elif model.family == Family.IMAGE:
            image.append(PricedModel(model, _image_prices(model, price)))
        else:
            prices = {
                "per_second": price(model.video_price_per_second),
                "submit_fee": price(model.video_submit_fee),
            }
            video.append(PricedModel(model, prices))
    return {
        "group": group,
        "multiplier": multiplier_label(multiplier),
        "is_list_price": multiplier == 1,
        "models": models,
        "text": text,
        "image": image,
        "video": video,
    }


def _groups(account) -> list[dict]:
    return [_group_entry(group) for group in selectors.groups_available(account)]


def _announce(response, message: str):
    """Tell screen readers what an in-place update did (console.js reads the event)."""
    return trigger_client_event(response, "announce", {"message": message})


def _no_store(response):
    add_never_cache_headers(response)
    return response


# --- API keys ---------------------------------------------------------------------------------


def _key_projects(membership):
    """The projects the member may make keys in (and move keys to)."""
    if not membership.can(permissions.MANAGE_OWN_KEYS):
        return projects_visible_to(membership).none()
    return projects_visible_to(membership)


def _list_context(request, **extra) -> dict:
    membership = request.membership
    projects = list(projects_visible_to(membership))
    api_keys = selectors.api_keys_visible_to(membership)
    # ?project=proj_... shows one project's keys; an id the member cannot see shows none.
    chosen = request.GET.get("project", "")
    if chosen:
        api_keys = api_keys.filter(project__public_id=chosen)
    api_keys = list(api_keys)
    context = {
        "key_rows": present_keys_with_spend(request.account, api_keys, membership),
        "can_create": membership.can(permissions.MANAGE_OWN_KEYS) and bool(projects),
        "can_manage_all": membership.can(permissions.MANAGE_ALL_KEYS),
        "projects": projects,
        "project_filter": chosen,
    }
    context.update(extra)
    return context


def _create_context(request, form: ApiKeyCreateForm | None = None) -> dict:
    groups = selectors.groups_available(request.account)
    if form is None:
        initial = {}
        chosen = request.GET.get("group")
        if chosen and selectors.group_get_available(account=request.account, group_id=chosen):
            initial["group"] = int(chosen)
        elif len(groups) == 1:
            initial["group"] = groups[0].pk
        initial["project"] = _initial_project(request)
        form = ApiKeyCreateForm(
            groups=groups, projects=_key_projects(request.membership), initial=initial
        )
    return {"form": form, "groups": _groups(request.account)}


def _member_default_project(membership):
    """Where a key goes when no project is chosen: the account's default project if the user
    may make keys there, else the first of theirs (the default project lists first)."""
    return _key_projects(membership).first()


def _initial_project(request) -> str | None:
    """The project asked for (?project=), else the user's default one."""
    projects = _key_projects(request.membership)
    asked = projects.filter(public_id=request.GET.get("project", "")).first()
    chosen = asked or projects.first()
    return chosen.public_id if chosen else None


@require_GET
@account_view()
def keys_list(request):
    context = _list_context(request)
    if context["can_create"]:
        context.update(_create_context(request))
    return render(request, "keys/list.html", context)


@require_http_methods(["GET", "POST"])
@account_view(permissions.MANAGE_OWN_KEYS)
def key_create(request):
    """The create form (a dialog on the list page, a page of its own without JavaScript)."""
    full_page = "keys/create.html"
    if request.method == "GET":
        template = "keys/list.html#key-create" if request.htmx else full_page
        return render(request, template, _create_context(request))
    groups = selectors.groups_available(request.account)
    form = ApiKeyCreateForm(request.POST, groups=groups, projects=_key_projects(request.membership))
    if form.is_valid():
        options = form.issue_options()
        options["project"] = options["project"] or _member_default_project(request.membership)
        try:
            if options["project"] is None:
                raise keys.KeyRuleError(
                    "You are not a member of any project. Ask an admin to add you to one.",
                    "project_id",
                )
            key, secret = keys.api_key_issue(account=request.account, actor=request.user, **options)
        except keys.KeyRuleError as error:
            form.add_rule_error(error, CREATE_FIELDS)
        else:
            base_url = public_base_url(request)
            model = snippets.text_model_for(key)
            code = model and snippets.quickstart(
                base_url=base_url, model=model, secret=secret, prefix="new-key"
            )
            context = {
                # A new key has spent nothing yet.
                "new_row": present_key(key, request.membership, spend_30d=0, spend_total=0),
                "secret": secret,
                "key_count": selectors.api_keys_visible_to(request.membership).count(),
                # Code with the secret in it: shown once, in this no-store answer, like the secret.
                "base_url": base_url,
                "snippets": code,
            }
            template = "keys/list.html#key-created" if request.htmx else full_page
            return _no_store(render(request, template, context))
    template = "keys/list.html#key-create" if request.htmx else full_page
    return render(request, template, _create_context(request, form), status=422)


def _key_for_change(request, public_id: str) -> ApiKey:
    """The key, if the viewer may see it (else 404: another account's, or of a project they
    are not in) and manage it (else 403)."""
    key = selectors.api_key_get_for_member(membership=request.membership, public_id=public_id)
    if not permissions.can_manage_key(request.membership, key):
        raise PermissionDenied("Only the key's creator, admins and owners can change this key.")
    return key


def _detail_context(request, key_view: KeyView, **extra) -> dict:
    context = {
        "key_view": key_view,
        "form": (
            ApiKeyEditForm(key=key_view.key, projects=_key_projects(request.membership))
            if key_view.can_manage
            else None
        ),
        "group_multiplier": multiplier_label(key_view.key.group.rate_multiplier),
    }
    context.update(extra)
    return context


def _render_detail(request, key_view: KeyView, partial: str | None = None, status=200, **extra):
    template = "keys/detail.html"
    if partial and request.htmx:
        template = f"{template}#{partial}"
    return render(request, template, _detail_context(request, key_view, **extra), status=status)


@require_GET
@account_view()
def key_detail(request, public_id):
    key = selectors.api_key_get_for_member(membership=request.membership, public_id=public_id)
    shown = _present_key_with_spend(request, key)
    return _render_detail(request, shown, **_key_usage(request, key))


@require_POST
@account_view(permissions.MANAGE_OWN_KEYS)
def key_update(request, public_id):
    """Save the name-and-limits form; with ``status`` (the Pause and Resume buttons), pause or
    resume the key instead, as PATCH /api/v1/keys/{id} does."""
    key = _key_for_change(request, public_id)
    if "status" in request.POST:
        return _key_status_change(request, key, request.POST["status"])
    shown = present_key(key, request.membership)
    if key.is_revoked:
        # Revoked in another tab since this form was shown.
        error = "This key is revoked; its settings can no longer change."
        return _render_detail(request, shown, "key-limits", status=422, limits_error=error)
    form = ApiKeyEditForm(request.POST, key=key, projects=_key_projects(request.membership))
    if form.is_valid():
        changes = form.changes()
        if not changes:
            return _render_detail(
                request, shown, "key-saved", form=form, limits_notice="Nothing to save."
            )
        try:
            key = keys.api_key_update(key=key, actor=request.user, **changes)
        except keys.KeyRuleError as error:
            form.add_rule_error(error, EDIT_FIELDS)
        else:
            if not request.htmx:
                messages.success(request, "Key settings saved.")
                return redirect("keys:key-detail", public_id=key.public_id)
            shown = present_key(key, request.membership)
            return _render_detail(request, shown, "key-saved", limits_notice="Saved.")
    return _render_detail(request, shown, "key-limits", status=422, form=form)


STATUS_NOTICES = {
    KeyStatus.PAUSED: "Key paused. Calls with it are refused until you resume it.",
    KeyStatus.ACTIVE: "Key resumed. Calls with it work again.",
}


def _key_row(request, key: ApiKey, *, status: int = 200):
    """The key's row of the list, as the list's pause switch and revoke button swap it in."""
    row = _present_key_with_spend(request, key)
    return render(request, "keys/list.html#key-row", {"row": row}, status=status)


def _key_status_change(request, key: ApiKey, status: str):
    """Pause or resume; the key page's detail, or its row when the list's switch asked, is
    rendered again, with what happened."""
    from_list = bool(request.htmx) and request.htmx.target == f"key-row-{key.public_id}"
    try:
        key = keys.api_key_update(key=key, actor=request.user, status=status)
    except keys.KeyRuleError as error:  # revoked meanwhile, or a status the buttons never send
        if from_list:
            key.refresh_from_db()
            return _announce(_key_row(request, key, status=422), str(error))
        if not request.htmx:
            messages.error(request, str(error))
            return redirect("keys:key-detail", public_id=key.public_id)
        key.refresh_from_db()
        return _render_detail(
            request,
            _present_key_with_spend(request, key),
            "key-detail",
            status=422,
            status_error=str(error),
            **_key_usage(request, key),
        )
    done = f"{'Paused' if key.is_paused else 'Resumed'} {key.name}."
    if from_list:
        return _announce(_key_row(request, key), done)
    if not request.htmx:
        messages.success(request, done)
        return redirect("keys:key-detail", public_id=key.public_id)
    response = _render_detail(
        request,
        _present_key_with_spend(request, key),
        "key-detail",
        notice=STATUS_NOTICES[key.status],
        **_key_usage(request, key),
    )
    return _announce(response, done)


@require_POST
@account_view(permissions.MANAGE_OWN_KEYS)
def key_roll(request, public_id):
    key = _key_for_change(request, public_id)
    try:
        secret = keys.api_key_roll(key=key, actor=request.user)
    except keys.KeyRuleError as error:
        shown = present_key(key, request.membership)
        return _render_detail(request, shown, "key-rolled", status=422, roll_error=str(error))
    shown = present_key(key, request.membership)
    return _no_store(_render_detail(request, shown, "key-rolled", secret=secret))


@require_POST
@account_view(permissions.MANAGE_OWN_KEYS)
def key_revoke(request, public_id):
    key = _key_for_change(request, public_id)
    key = keys.api_key_revoke(key=key, actor=request.user)
    if request.htmx and request.htmx.target == f"key-row-{key.public_id}":
        return _announce(_key_row(request, key), f"Revoked {key.name}.")
    if request.htmx:
        response = _render_detail(
            request,
            _present_key_with_spend(request, key),
            "key-detail",
            notice="Key revoked.",
            **_key_usage(request, key),
        )
        return _announce(response, f"Revoked {key.name}.")
    messages.success(request, f"Revoked {key.name}.")
    return redirect("keys:key-detail", public_id=key.public_id)


@require_POST
@account_view(permissions.MANAGE_OWN_KEYS)
def key_delete(request, public_id):
    key = _key_for_change(request, public_id)
    keys.api_key_delete(key=key, actor=request.user)
    messages.success(request, f"Deleted {key.name}. Its usage stays in reports.")
    url = reverse("keys:keys")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# --- Management keys -------------------------------------------------------------------------


def _management_context(request, **extra) -> dict:
    context = {
        "management_keys": list(selectors.management_keys_for_account(request.account)),
        "form": ManagementKeyCreateForm(),
    }
    context.update(extra)
    return context


@require_GET
@account_view(permissions.MANAGE_MANAGEMENT_KEYS)
def management_keys(request):
    return render(request, "keys/management.html", _management_context(request))


@require_http_methods(["GET", "POST"])
@account_view(permissions.MANAGE_MANAGEMENT_KEYS)
def management_key_create(request):
    """The create form: a dialog's content for htmx, else the list page with the form in it."""
    page = "keys/management.html"
    inline_form = not request.htmx
    if request.method == "GET":
        template = page if inline_form else f"{page}#mkey-create"
        return render(request, template, _management_context(request, inline_form=inline_form))
    form = ManagementKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            key, secret = keys.management_key_issue(
                account=request.account, actor=request.user, name=form.cleaned_data["name"]
            )
        except keys.KeyRuleError as error:
            form.add_error("name", str(error))
        else:
            context = _management_context(
                request, new_key=key, secret=secret, inline_form=inline_form
            )
            template = page if inline_form else f"{page}#mkey-created"
            return _no_store(render(request, template, context))
    context = _management_context(request, form=form, inline_form=inline_form)
    template = page if inline_form else f"{page}#mkey-create"
    return render(request, template, context, status=422)


@require_POST
@account_view(permissions.MANAGE_MANAGEMENT_KEYS)
def management_key_revoke(request, public_id):
    key = selectors.management_key_get_for_account(account=request.account, public_id=public_id)
    keys.management_key_revoke(key=key, actor=request.user)
    key.refresh_from_db()
    if request.htmx:
        response = render(request, "keys/management.html#mkey-row", {"mkey": key})
        return _announce(response, f"Revoked {key.name}.")
    messages.success(request, f"Revoked {key.name}.")
    return redirect("keys:management-keys")


# --- Groups and pricing ------------------------------------------------------------------------


@require_GET
@account_view()
def groups(request):
    return render(
        request,
        "keys/groups.html",
        {
            "groups": _groups(request.account),
            "can_create": request.membership.can(permissions.MANAGE_OWN_KEYS),
        },
    )
