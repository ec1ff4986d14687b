"""Connection security from the settings: what clients get, what is refused, what never shows."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

from schemas import ConfigurationError
from stream_app.settings import Settings

PASSWORD = "sasl-password-5bd1e3"
SIGNING_KEY = "signing-key-9c07aa"
KEY_PASSWORD = "test-key-password"
SECRETS = (PASSWORD, SIGNING_KEY, KEY_PASSWORD)

# A self-signed test certificate and its key, encrypted with KEY_PASSWORD; used for nothing else.
CERT_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUTYLZAG2YrU0PvaT4siMRKfa+4ZcwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOc2Vnc3RyZWFtLXRlc3QwIBcNMjYxMTI2MTY0OTU5WhgPMjEy
NjExMDIxNjQ5NTlaMBkxFzAVBgNVBAMMDnNlZ3N0cmVhbS10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEeO3BitexwUK5rr6u+zsBsEhMEWmzvVxRuy4fdijl
h60txJQxGzqoyRGEY+3Ew5qKBJ91Y5JGT0nmdVJGdMEUMaNTMFEwHQYDVR0OBBYE
FNeD5fHnnRLhXoOYn2ti9RLe1mbAMB8GA1UdIwQYMBaAFNeD5fHnnRLhXoOYn2ti
9RLe1mbAMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAOtd/I/t
VWWZoxZwqWS7cyGTwaVMtQxfA5OOt/yKTxOfAiB7khphQcZBEYIo27wEQ8xBlDwG
i1+X6hJBSHoNF/Sf3A==
-----END CERTIFICATE-----
"""
KEY_PEM = """\
-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgEoYC7w2mpXAICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEG8vf3QG4t2FocWv0/E1+gIEgZDp
DagIqIADEfdbmlTn6RHH88kLCPxAarL6038fAvqK0gGGpLwtxSIVEQIRpgnnoJCY
N9oq1A9Zz0Sz/p/+KRngACVQLAfVt1pSbYjK/HtNUwSqsoSiAQjs0ia4QFMTbgQn
EUSG5/VxCQqx8jlL4Q3Dc0morPNldDcBZmIRg2mI2k9xk1YHEwwJyyB771OBXDw=
-----END ENCRYPTED PRIVATE KEY-----
"""


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A CA file, a client certificate and its encrypted key, on disk."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text(CERT_PEM)
    key.write_text(KEY_PEM)
    # The self-signed certificate is its own CA.
    return {"ca": cert, "cert": cert, "key": key}


def _sasl(**extra: object) -> Settings:
    values: dict[str, object] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "segstream",
        "sasl_password": PASSWORD,
        "model_signing_key": SIGNING_KEY,
    }
    return Settings(**(values | extra))


def _assert_hidden(text: str) -> None:
    for number, secret in enumerate(SECRETS, start=1):
        shown = secret in text
        assert not shown, f"secret {number} is shown"  # never print the text itself


def test_by_default_clients_connect_in_plaintext_and_customers_are_not_echoed() -> None:
    settings = Settings()
    assert settings.kafka_client_options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert settings.broker_credentials() is None
    assert settings.ssl_context() is None
    assert settings.echo_customer is False


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_settings_reach_aiokafka_and_faust_alike(mechanism: str) -> None:
    settings = _sasl(sasl_mechanism=mechanism)
    assert settings.kafka_client_options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "segstream",
        "sasl_plain_password": PASSWORD,
    }
    credentials = settings.broker_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.mechanism.value == mechanism
    assert (credentials.username, credentials.password) == ("segstream", PASSWORD)
    assert credentials.ssl_context is None
    _assert_hidden(repr(credentials))


def test_sasl_over_tls_and_tls_alone_carry_a_verifying_context(
    tls_files: dict[str, Path],
) -> None:
    over_tls = _sasl(security_protocol="SASL_SSL", ssl_cafile=tls_files["ca"])
    options = over_tls.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    credentials = over_tls.broker_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)

    tls = Settings(security_protocol="ssl", ssl_check_hostname=False)
    assert tls.kafka_client_options()["security_protocol"] == "SSL"
    tls_context = tls.ssl_context()
    assert tls_context is not None
    assert tls_context.check_hostname is False
    assert tls_context.verify_mode == ssl.CERT_REQUIRED  # the certificate is still checked
    credentials = tls.broker_credentials()
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"


def test_a_client_certificate_loads_with_its_key_password_and_only_with_it(
    tls_files: dict[str, Path],
) -> None:
    files = {"ssl_certfile": tls_files["cert"], "ssl_keyfile": tls_files["key"]}
    good = Settings(security_protocol="SSL", ssl_key_password=KEY_PASSWORD, **files)
    assert isinstance(good.ssl_context(), ssl.SSLContext)
    _assert_hidden(repr(good))

    wrong = "not-the-key-password"
    for settings in (
        Settings(security_protocol="SSL", **files),  # no password: fails, never prompts
        Settings(security_protocol="SSL", ssl_key_password=wrong, **files),
    ):
        with pytest.raises(ConfigurationError, match="SEGSTREAM_SSL_KEY_PASSWORD") as caught:
            settings.kafka_client_options()
        assert "\n" not in str(caught.value)
        assert wrong not in str(caught.value)
        _assert_hidden(str(caught.value))


def test_secrets_never_show_in_repr_str_or_dumps(tls_files: dict[str, Path]) -> None:
    settings = Settings(
        security_protocol="SASL_SSL",
        sasl_username="segstream",
        sasl_password=PASSWORD,
        model_signing_key=SIGNING_KEY,
        ssl_certfile=tls_files["cert"],
        ssl_keyfile=tls_files["key"],
        ssl_key_password=KEY_PASSWORD,
    )
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump(mode="json")),
        repr(settings.model_dump()),
    ):
        _assert_hidden(text)
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == PASSWORD


def test_settings_come_from_the_environment_in_any_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSTREAM_SECURITY_PROTOCOL", "sasl_plaintext")
    monkeypatch.setenv("SEGSTREAM_SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("SEGSTREAM_SASL_USERNAME", "segstream")
    monkeypatch.setenv("SEGSTREAM_SASL_PASSWORD", PASSWORD)
    settings = Settings()
    assert (settings.security_protocol, settings.sasl_mechanism) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
    )
    assert settings.kafka_client_options()["sasl_plain_password"] == PASSWORD


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "SEGSTREAM_SECURITY_PROTOCOL=SASL_SSL needs SEGSTREAM_SASL_USERNAME and "
            "SEGSTREAM_SASL_PASSWORD",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_password": PASSWORD},
            "needs SEGSTREAM_SASL_USERNAME",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": ""},
            "needs SEGSTREAM_SASL_PASSWORD",
        ),
        ({"sasl_password": PASSWORD}, "SEGSTREAM_SASL_PASSWORD set, but"),
        ({"security_protocol": "SSL", "sasl_username": "u"}, "does not use SASL"),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p"}
            | {"ssl_key_password": KEY_PASSWORD},
            "does not use TLS",
        ),
        ({"security_protocol": "SSL", "ssl_key_password": KEY_PASSWORD}, "SSL_CERTFILE too"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "no such file"),
        ({"security_protocol": "TLS"}, "SEGSTREAM_SECURITY_PROTOCOL: Input should be"),
        (
            {"sasl_mechanism": "GSSAPI", "model_signing_key": SIGNING_KEY},
            "SEGSTREAM_SASL_MECHANISM: Input should be",
        ),
        ({"batch_size": 0, "sasl_password": PASSWORD}, "SEGSTREAM_BATCH_SIZE"),
        ({"compression": "brotli"}, "SEGSTREAM_COMPRESSION: Input should be 'lz4', 'zstd'"),
    ],
)
def test_a_bad_combination_is_one_clear_line_without_secrets(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings(**values)
    text = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert text.startswith("invalid settings: ")
    assert message in text
    assert "\n" not in text
    _assert_hidden(text)


def test_fausts_own_variables_do_not_override_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stream_app.app import create_app

    monkeypatch.setenv("WEB_PORT", "1234")
    monkeypatch.setenv("BROKER_URL", "kafka://elsewhere:9092")
    monkeypatch.setenv("APP_DATADIR", "/elsewhere")
    conf = create_app(Settings(web_port=7777, data_dir=Path("worker-data"))).faust_app.conf
    assert conf.web_port == 7777
    assert [str(url) for url in conf.broker] == ["kafka://127.0.0.1:9092"]
    assert conf.datadir == Path("worker-data")


def test_aiokafka_debug_logs_hide_the_sasl_token(caplog: pytest.LogCaptureFixture) -> None:
    _sasl(sasl_mechanism="PLAIN").kafka_client_options()
    # What aiokafka's connection logs for each request: a PLAIN token is the password.
    request = SaslAuthenticateRequest_v1(f"segstream\0segstream\0{PASSWORD}".encode())
    with caplog.at_level(logging.DEBUG, logger="aiokafka.conn"):
        logging.getLogger("aiokafka.conn").debug(
            "Request to %s:%d %d: %s", "127.0.0.1", 9092, 3, request
        )
    (record,) = caplog.records
    assert "SASL token hidden" in record.getMessage()
    _assert_hidden(caplog.text)
