"""Error classification works on an exception's text and attributes alone: no litellm needed to test it."""

from __future__ import annotations

from types import SimpleNamespace

from server.calling.provider_errors import classify

NO_CLASSES = SimpleNamespace()  # stands for the litellm module: no exception class matches


class StatusError(Exception):
    """An error shaped like litellm's: a status code, a message, response headers."""

    def __init__(self, message: str, status_code: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.litellm_response_headers = headers


def test_a_429_with_retry_after_is_rate_limited_for_that_long() -> None:
    error = classify(StatusError("slow down", 429, {"retry-after": "7"}), NO_CLASSES)
    assert (error.kind, error.status, error.retry_after_s) == ("rate_limited", 429, 7.0)


def test_geminis_retry_delay_in_the_body_is_read() -> None:
    body = 'litellm.RateLimitError: {"error": {"message": "Quota exceeded", "details": [{"retryDelay": "22s"}]}}'
    error = classify(StatusError(body, 429), NO_CLASSES)
    assert (error.kind, error.detail, error.retry_after_s) == ("rate_limited", "Quota exceeded", 22.0)


def test_a_refused_connection_reported_as_a_500_is_a_connection_error() -> None:
    error = classify(StatusError("InternalServerError: Cannot connect to host 127.0.0.1:9", 500), NO_CLASSES)
    assert (error.kind, error.status) == ("connection", None)


def test_anthropics_overloaded_error_is_a_529_whatever_status_litellm_gives() -> None:
    assert classify(StatusError('{"type": "overloaded_error"}', 500), NO_CLASSES).status == 529


def test_a_generic_400_naming_the_context_window_is_refined() -> None:
    error = classify(StatusError("BadRequestError: prompt is too long: 250000 tokens", 400), NO_CLASSES)
    assert error.kind == "context_window"


def test_the_library_classes_come_from_the_module_passed_in() -> None:
    class RateLimitError(Exception):
        pass

    assert classify(RateLimitError("x"), SimpleNamespace(RateLimitError=RateLimitError)).kind == "rate_limited"
    assert classify(RateLimitError("x"), NO_CLASSES).kind == "provider_error"
