"""HTTPS callbacks: the connection is pinned to the checked address, yet the certificate is
still verified against the URL's host name (and SNI names that host)."""

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.delivery import DeliveryStatus
from generation.callbacks import transport
from generation.callbacks.services import callback_deliver, callback_schedule
from tests.callbacks.conftest import Receiver, finished_task, task_data

pytestmark = pytest.mark.django_db

HOST = "hooks.tls.example"
SYSTEM_TRUST = transport._ssl_context  # the real one: certifi's CA bundle


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and a server certificate for HOST signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ByteSpike test CA"))
        .issuer_name(_name("ByteSpike test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    (folder / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {
        "server": folder / "server.pem",
        "ca": ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


@pytest.fixture
def tls_receiver(pki, settings, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 with a certificate for HOST, trusted by our client."""
    settings.BYTESPIKE_CALLBACK_ALLOW_HTTP = False
    server_names = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"])
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    receiver = Receiver().start(wrap=lambda sock: context.wrap_socket(sock, server_side=True))
    receiver.server_names = server_names
    client = ssl.create_default_context(cadata=pki["ca"])
    monkeypatch.setattr(transport, "_ssl_context", lambda: client)
    yield receiver
    receiver.stop()


def _deliver(world, model, url):
    task = finished_task(world.account, model, url)
    delivery = callback_schedule(task, task_data(task))
    return callback_deliver(delivery.pk), delivery


def test_https_to_a_pinned_address_verifies_the_host_name(
    world, image_model, tls_receiver, dns, connections, settings
):
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = [HOST]
    dns.names[HOST] = ["127.0.0.1"]

    attempt, delivery = _deliver(world, image_model, f"https://{HOST}:{tls_receiver.port}/hook")

    assert (attempt.status_code, attempt.error) == (200, "")
    assert tls_receiver.server_names == [HOST]
    assert tls_receiver.requests[0].headers["host"] == f"{HOST}:{tls_receiver.port}"
    assert [address[0] for address in connections] == ["127.0.0.1"]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_a_certificate_for_another_name_is_refused(world, image_model, tls_receiver, dns, settings):
    # Same address, other name: dialling the checked IP must not skip the name check.
    other = "other.tls.example"
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = [other]
    dns.names[other] = ["127.0.0.1"]

    attempt, delivery = _deliver(world, image_model, f"https://{other}:{tls_receiver.port}/hook")

    assert attempt.status_code is None
    assert "certificate" in attempt.error.lower()
    assert tls_receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_an_untrusted_certificate_is_refused(
    world, image_model, tls_receiver, dns, monkeypatch, settings
):
    settings.BYTESPIKE_CALLBACK_ALLOWED_HOSTS = [HOST]
    dns.names[HOST] = ["127.0.0.1"]
    monkeypatch.setattr(transport, "_ssl_context", SYSTEM_TRUST)

    attempt, _ = _deliver(world, image_model, f"https://{HOST}:{tls_receiver.port}/hook")

    assert "certificate verify failed" in attempt.error
    assert tls_receiver.requests == []
