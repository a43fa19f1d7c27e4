"""Styled error pages for every path outside the API: an unknown URL gets the
hub's own 404 page (in the user's language) instead of Werkzeug's bare one,
and an unexpected failure a 500 page that says what to do, never a traceback."""

from __future__ import annotations

import flask
from werkzeug.exceptions import HTTPException

from hub.web.i18n import gettext

MESSAGES = {
    400: "The request could not be understood. Go back and try again.",
    403: "You do not have permission for this.",
    404: "This page does not exist.",
    405: "This page cannot be used like that.",
    413: "What you sent is too large.",
    429: "Too many requests: wait a moment and try again.",
    500: "Something went wrong on our side. It has been logged; try again in a moment.",
}


def page_error(exc: HTTPException):
    """A page for ``exc``; keeps its status and headers (Retry-After, Allow)."""
    if exc.response is not None:
        return exc.response  # the raiser made its own answer (the login limiter's 429 page): keep it
    code = exc.code or 500
    message = gettext(MESSAGES.get(code, MESSAGES[500] if code >= 500 else MESSAGES[400]))
    body = flask.render_template("error.html", code=code, message=message)
    resp = flask.make_response(body, code)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            resp.headers[name] = value
    return resp
