"""The two formats: json, one object per line with the standard fields and the request's
context; text, the default, one readable line. Either way no key survives into a line, and
``BYTESPIKE_LOG_FORMAT`` picks the format for every process's loggers (Django's, uvicorn's,
ours)."""

import json
import logging
import re
import subprocess
import sys

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from console.logfilters import RedactSecrets
from core import logs
from tests.factories import funded_keys
from tests.processes import ROOT, embedded_env, shared_env, start_web

KEY = "sk-byts-" + "K" * 40
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def log_a_bit() -> None:
    """A plain line with arguments, an event with fields in a request's context, a traceback."""
    logging.getLogger("tests.logs").warning("disk %s at %d%%", "/var", 91)
    with logs.bound(request_id="req_X", account_id="acct_Y"):
        logs.get_logger("tests.events").info("thing.happened", count=3, note="two words")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("tests.logs").exception("it failed")


def test_json_lines_carry_the_standard_fields_then_the_context(json_logs):
    log_a_bit()
    plain, event, failure = json_logs.lines()

    assert list(plain) == ["timestamp", "level", "logger", "message"]
    assert re.fullmatch(STAMP, plain["timestamp"])
    assert (plain["level"], plain["logger"], plain["message"]) == (
        "warning", "tests.logs", "disk /var at 91%",
    )  # fmt: skip
    assert event == {
        "timestamp": event["timestamp"], "level": "info", "logger": "tests.events",
        "message": "thing.happened", "event": "thing.happened", "request_id": "req_X",
        "count": 3, "note": "two words", "account_id": "acct_Y",
    }  # fmt: skip
    assert list(event)[:6] == ["timestamp", "level", "logger", "message", "event", "request_id"]
    assert failure["request_id"] == "req_X" and failure["account_id"] == "acct_Y"
    assert (
        failure["exception"].startswith("Traceback") and "ValueError: boom" in failure["exception"]
    )
    assert "event" not in failure  # a plain logging call's line has a message only


def test_text_lines_read_as_one_line_each(text_logs):
    log_a_bit()
    lines = text_logs.text.splitlines()
    assert re.fullmatch(f"{STAMP} WARNING tests.logs disk /var at 91%", lines[0])
    assert re.fullmatch(
        f'{STAMP} INFO tests.events thing.happened request_id=req_X count=3 note="two words" '
        "account_id=acct_Y",
        lines[1],
    )
    assert re.fullmatch(f"{STAMP} ERROR tests.logs it failed request_id=req_X account_id=acct_Y",
                        lines[2])  # fmt: skip
    assert lines[3] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_keys_are_redacted_wherever_they_are_in_a_line(json_logs, text_logs):
    """In arguments and messages (the filter), and in structured fields and tracebacks, which
    only the formatter's last step sees."""
    logger = logging.getLogger("tests.logs")
    logger.info("key %s", KEY)
    logger.info("GET /v1beta/models/x:streamGenerateContent?alt=sse&key=AIzaSECRET1")
    logger.info('quoted: "/v1/models?key=AIzaSECRET3" and ?token=TOKEN4\\"x')  # JSON stays valid
    logs.get_logger("tests.events").info(
        "sent", header=f"Bearer {KEY}", url="/hook?token=TOKEN2", nested={"k": KEY}
    )
    try:
        raise RuntimeError(f"refused {KEY}")
    except RuntimeError:
        logger.exception("failed")

    assert len(json_logs.lines()) == 5
    for output in (json_logs.text, text_logs.text):
        for secret in (KEY, "K" * 20, "AIzaSECRET1", "TOKEN2", "AIzaSECRET3", "TOKEN4"):
            assert secret not in output
        assert output.count("[redacted]") >= 8


def test_the_filter_still_cleans_lines_for_handlers_that_are_not_ours():
    """uvicorn's access log in text mode keeps its own handler and format."""
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s"', ("127.0.0.1", "GET", f"/v1/models?key={KEY}"),
                               None)  # fmt: skip
    assert RedactSecrets().filter(record)
    assert logging.Formatter().format(record) == '127.0.0.1 - "GET /v1/models?key=[redacted]"'


def run_logging(tmp_path, **env) -> subprocess.CompletedProcess:
    """A fresh process that logs a line with a key, a warning and an event, as configured."""
    code = (
        "import logging, warnings\n"
        "from django.conf import settings\n"
        "from django.utils.log import configure_logging\n"
        "configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)  # as django.setup() does\n"
        "from core import logs\n"
        f"logging.getLogger('probe').info('hello %s', {KEY!r})\n"
        "warnings.warn('careful')\n"
        "with logs.bound(request_id='req_P'):\n"
        "    logs.get_logger('probe').info('probe.event', n=1)\n"
    )
    environment = embedded_env(tmp_path, DJANGO_SETTINGS_MODULE="console.settings", **env)
    if "BYTESPIKE_LOG_FORMAT" not in env:
        environment.pop("BYTESPIKE_LOG_FORMAT", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_setting_picks_the_format_of_a_whole_process_text_by_default(tmp_path):
    text = run_logging(tmp_path)
    assert text.returncode == 0, text.stderr
    assert re.search(rf"^{STAMP} INFO probe hello sk-byts-\[redacted\]$", text.stderr, re.M)
    assert re.search(rf"^{STAMP} WARNING py.warnings .*careful", text.stderr, re.M)
    assert re.search(rf"^{STAMP} INFO probe probe.event request_id=req_P n=1$", text.stderr, re.M)

    produced = run_logging(tmp_path, BYTESPIKE_LOG_FORMAT="json")
    assert produced.returncode == 0, produced.stderr
    lines = [json.loads(line) for line in produced.stderr.splitlines()]  # nothing but JSON
    assert {"logger": "probe", "message": "hello sk-byts-[redacted]"}.items() <= lines[0].items()
    assert lines[1]["logger"] == "py.warnings" and "careful" in lines[1]["message"]
    assert {"event": "probe.event", "request_id": "req_P", "n": 1}.items() <= lines[2].items()


def test_a_format_that_is_neither_stops_the_process_at_its_settings():
    with pytest.raises(ImproperlyConfigured, match="BYTESPIKE_LOG_FORMAT is 'yaml': it must be"):
        logs.logging_config("yaml", "INFO")


@pytest.mark.django_db(transaction=True)
def test_a_web_process_in_json_mode_writes_nothing_but_json_lines(tmp_path, world):
    """uvicorn's own lines and its access log included, as a deploy runs it."""
    keys = funded_keys(world.account, world.owner)
    env = shared_env(tmp_path, BYTESPIKE_LOG_FORMAT="json", BYTESPIKE_SANDBOX_LATENCY_MS="0")
    log = tmp_path / "web.log"
    process, base = start_web(env, log=log, log_level="info")
    try:
        answered = httpx.post(
            f"{base}/v1/chat/completions", headers={"x-api-key": keys["default"]}, timeout=30,
            json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi"}]},
        )  # fmt: skip
        refused = httpx.get(f"{base}/v1/models?key={KEY}", timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (answered.status_code, refused.status_code) == (200, 401)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_id = {line.get("request_id"): line for line in lines if line.get("event") == "request"}
    call = by_id[answered.headers["X-Request-ID"]]
    assert (call["status"], call["model"], call["account_id"]) == (
        200, "gpt-4.1", world.account.public_id,
    )  # fmt: skip
    assert call["credits_micro"] > 0
    assert by_id[refused.headers["X-Request-ID"]]["status"] == 401
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access", "bytespike.access"} <= loggers
    assert KEY not in log.read_text() and "K" * 20 not in log.read_text()
