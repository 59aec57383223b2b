"""Schemathesis against the management API's own OpenAPI document (/api/v1/openapi.json).

The document is fetched from the app (WSGI, the full console middleware stack), and every
operation it lists is one test item: schemathesis generates requests the schema allows and
requests it forbids, and each is sent with a real management key of an account that has keys,
usage, a ledger and money. Every answer must be no server error, have a status code and content
type the document lists for the operation, and a body that matches the document's schema; data
the schema forbids must be refused, and each operation must refuse a call without the key (the
`ignored_auth` check).
"""

import zlib

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from billing.models import LedgerKind
from billing.reports import GROUP_BYS
from catalogue.models import Family
from tests.fuzz.conftest import FUZZ

DOCUMENT = "/api/v1/openapi.json"
CONFIG = schemathesis.Config.from_dict(
    {
        # The key is sent by the test (a real one); schemathesis checks separately that each
        # operation refuses a call without it (the `ignored_auth` check).
        "generation": {"with-security-parameters": False},
        # Data the schema allows may still be refused with a 400 for what a schema cannot say:
        # a group the account may not use, `since` after `until`, an address that is no CIDR.
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }
)
# Read when the module is collected: one test item per operation, so a failing operation is
# reported by name and pytest-xdist spreads the operations over its workers. (schemathesis's
# own `parametrize` gives all its items one node id on pytest 9, and xdist runs only one.)
SCHEMA = schemathesis.openapi.from_wsgi(DOCUMENT, WSGIHandler(), config=CONFIG)
OPERATIONS = [result.ok().label for result in SCHEMA.get_all_operations()]


# Values the document describes only in prose ("One of ..."): a drawn string is almost never
# one, so without these the reports would only be exercised as 400s.
QUERY_VALUES = {
    "api_key_id": None,  # a key of the account, set per case
    "model": ["gpt-4.1", "claude-haiku-4-5", "gpt-image-1"],
    "family": list(Family.values),
    "group_by": list(GROUP_BYS),
    "format": ["json", "csv"],
    "kind": list(LedgerKind.values),
    "since": ["2026-01-01", "2026-11-01T10:00:00"],
    "until": ["2027-01-01", "2027-11-30"],
}


def _with_real_values(case, fuzz_account) -> None:
    """Point two schema-valid cases in three at what exists: a key of the account, its group, a
    model, a real filter value. (Data the schema forbids is left as drawn: it must be refused.)

    Which cases, and which values, is decided by what was drawn, so a run stays repeatable.
    """
    if case.meta is not None and case.meta.generation.mode is GenerationMode.NEGATIVE:
        return
    pick = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if pick % 3 == 0:
        return
    key_ids = fuzz_account.key_ids
    if case.path_parameters and "key_id" in case.path_parameters:
        case.path_parameters["key_id"] = key_ids[pick % len(key_ids)]
    for name, values in QUERY_VALUES.items():
        if case.query and name in case.query:
            values = values or key_ids
            case.query[name] = values[pick % len(values)]
    if isinstance(case.body, dict) and "group_id" in case.body and case.method == "POST":
        groups = list(fuzz_account.groups.values())
        case.body["group_id"] = groups[pick % len(groups)].pk


@pytest.mark.django_db
@pytest.mark.parametrize("operation", OPERATIONS)
def test_management_api_conforms_to_its_schema(operation, fuzz_account, keep_test_connection):
    api_operation = SCHEMA.find_operation_by_label(operation)
    cases = st.one_of(
        api_operation.as_strategy(GenerationMode.POSITIVE),
        api_operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @FUZZ
    @given(case=cases)
    def conforms(case):
        _with_real_values(case, fuzz_account)
        case.call_and_validate(headers={"x-api-key": fuzz_account.management_key})

    conforms()


def test_the_document_lists_every_operation_the_api_routes():
    """So the test above calls every operation: none is left out of the document."""
    from console.api import api

    routed = {
        f"{method} /api/v1{path}"
        for _, router in api._routers
        for path, view in router.path_operations.items()
        for operation in view.operations
        for method in operation.methods
    }
    assert routed == set(OPERATIONS)
