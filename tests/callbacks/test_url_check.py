"""Submit-time checks of callback URLs: https only, public addresses only (SSRF guard)."""

import ipaddress
import socket

import pytest

from generation.callbacks.targets import (
    CallbackURLError,
    address_refusal,
    callback_target,
    check_callback_url,
)

PUBLIC = "93.184.215.14"


@pytest.fixture(autouse=True)
def _strict(strict_callbacks):
    pass


def test_a_public_https_url_is_accepted_as_given(dns):
    dns.names["hooks.example.com"] = [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    url = "https://hooks.example.com/bytespike?source=tasks"

    assert check_callback_url(url) == url
    assert callback_target(url).addresses == (PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/",
        "ftp://hooks.example.com/",
        "hooks.example.com/callback",
        "https://",
        "https:///path",
        "",
        "not a url",
        "https://hooks example.com/",
        "https://hooks.example.com\\@127.0.0.1/",
        "https://user:pass@hooks.example.com/",
        "https://user@hooks.example.com/",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com/" + "a" * 2000,
        "https://hooks.example.com/\r\nX-Injected: 1",
    ],
)
def test_malformed_or_plain_http_urls_are_refused(dns, url):
    dns.names["hooks.example.com"] = [PUBLIC]

    with pytest.raises(CallbackURLError):
        check_callback_url(url)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "192.168.1.10",
        "172.16.0.1",
        "172.31.255.254",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104
        "0.1.2.3",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[fd00::1]",
        "[fc00::1]",
        "[fe80::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[64:ff9b::a00:1]",
        "[2002:a00:1::]",
        "[::7f00:1]",
        "[2001:db8::1]",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "127.1",
    ],
)
def test_literal_non_public_addresses_are_refused(host):
    with pytest.raises(CallbackURLError):
        check_callback_url(f"https://{host}/hook")


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001"])
def test_odd_ipv4_spellings_are_judged_by_what_they_resolve_to(host):
    # The resolver turns these into 127.0.0.1, and that is the address that is judged.
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)}
    assert resolved == {"127.0.0.1"}
    assert address_refusal("127.0.0.1") == "loopback"


def test_0177_0_0_1_is_refused(dns):
    with pytest.raises(CallbackURLError):
        check_callback_url("https://0177.0.0.1/hook")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("0.1.2.3", "this-network"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:192.168.0.1", "private"),
        ("fd00::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("fe80::1%1", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2001::1", "tunnelled"),
        (PUBLIC, ""),
        ("2606:4700::6810:84e5", ""),
        ("64:ff9b::5db8:d70e", ""),  # NAT64 of a public IPv4 address
    ],
)
def test_address_rules(address, reason):
    assert address_refusal(address) == reason
    assert address_refusal(ipaddress.ip_address(address.split("%")[0])) == reason


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], ["fd00::7"], [PUBLIC, "10.0.0.7"]],
)
def test_a_host_name_resolving_to_any_non_public_address_is_refused(dns, addresses):
    dns.names["hooks.example.com"] = addresses

    with pytest.raises(CallbackURLError, match="public addresses only"):
        check_callback_url("https://hooks.example.com/hook")


@pytest.mark.parametrize(
    "host",
    [
        "metadata.google.internal",
        "metadata.google.internal.",
        "METADATA.GOOGLE.INTERNAL",
        "metadata.goog",
        "instance-data.ec2.internal",
        "localhost",
        "api.localhost",
        "printer.local",
        "db.internal",
        "intranet",
    ],
)
def test_metadata_and_internal_host_names_are_refused_without_resolving(dns, host):
    dns.names[host.lower().rstrip(".")] = [PUBLIC]

    with pytest.raises(CallbackURLError):
        check_callback_url(f"https://{host}/hook")
    assert host.lower().rstrip(".") not in dns.lookups


def test_a_host_that_does_not_resolve_is_refused(dns):
    dns.names["nowhere.example.com"] = []

    with pytest.raises(CallbackURLError, match="could not be resolved"):
        check_callback_url("https://nowhere.example.com/hook")


def test_plain_http_only_where_the_setting_allows_it(dns, settings):
    dns.names["hooks.example.com"] = [PUBLIC]
    settings.BYTESPIKE_CALLBACK_ALLOW_HTTP = True

    assert check_callback_url("http://hooks.example.com/hook") == "http://hooks.example.com/hook"


def test_allowed_hosts_exempt_only_the_hosts_they_name(settings):
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]

    assert check_callback_url("https://127.0.0.1:8443/hook")
    # The same address spelled otherwise, or another loopback address, is still refused.
    for url in ("https://2130706433/hook", "https://127.0.0.2/hook", "https://[::1]/hook"):
        with pytest.raises(CallbackURLError):
            check_callback_url(url)
