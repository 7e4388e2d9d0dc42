"""Logging helpers: a refused request (4xx) is one line, not a traceback."""

import logging


class ClientErrorsOnOneLine(logging.Filter):
    """Drop the traceback Django attaches to 4xx records (a 403's PermissionDenied, a 400's
    SuspiciousOperation), keeping the exception's message on the same line. 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and 400 <= status < 500 and record.exc_info:
            exception = record.exc_info[1]
            reason = f"{type(exception).__name__}: {exception}" if exception else ""
            user = getattr(getattr(getattr(record, "request", None), "user", None), "username", "")
            suffix = " ".join(
                part for part in (f"({reason})" if reason else "", f"user={user}" if user else "") if part
            )
            record.msg = f"{record.getMessage()} {suffix}".rstrip()
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True
