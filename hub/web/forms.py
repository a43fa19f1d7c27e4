"""WTForms for the UI's actions (validation only; templates write the labels).

The forms do not check the CSRF token themselves: the blueprint guard
(:func:`hub.web.common.ui_blueprint`) checks it for every POST before any view
runs, forms or not.  Templates put the token in with ``csrf_token()``.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp

from hub.engine.accounts import DEFAULT_SCOPE, MAX_EXPIRY_DAYS, ROLES, SCOPES
from hub.web.i18n import LOCALES

OUTCOMES = ("callback_done", "solved_remotely", "compensated", "explained", "not_reachable", "no_action_needed")


class _Form(FlaskForm):
    class Meta:
        csrf = False  # checked by the blueprint guard for every POST


class LoginForm(_Form):
    username = StringField("Username", validators=[DataRequired(), Length(max=100)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class LocaleForm(_Form):
    locale = SelectField(choices=list(LOCALES))


class AssignForm(_Form):
    owner = StringField(validators=[DataRequired(), Length(max=100)])


class NoteForm(_Form):
    text = TextAreaField("Note", validators=[DataRequired(), Length(max=5000)])


#: How the callback time is typed: day first, as Dutch and European English write it
#: (a browser's own date picker follows the browser's language, often US order).
#: ISO is accepted too, for scripts and older pages.
DUE_FORMATS = ["%d-%m-%Y %H:%M", "%d-%m-%Y %H.%M", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


class PlanForm(_Form):
    due = DateTimeLocalField("Callback at", format=DUE_FORMATS, validators=[DataRequired()])


class ContactForm(_Form):
    outcome = StringField(validators=[Optional(), Length(max=50)])


class ResolveForm(_Form):
    outcome = SelectField("Outcome", choices=list(OUTCOMES), validators=[InputRequired()])
    root_cause = StringField("Root cause", validators=[DataRequired(), Length(max=200)])
    resolved = RadioField("Resolved for the customer?", choices=["yes", "no"],
                          validators=[InputRequired()])


class CloseForm(_Form):
    reason = StringField("Reason", validators=[Optional(), Length(max=200)])


class UserForm(_Form):
    username = StringField("Username", validators=[DataRequired(), Length(max=100),
                                                       Regexp(r"^[A-Za-z0-9_.@-]+$")])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=200)])
    role = SelectField("Role", choices=list(ROLES), default="agent")
    locale = SelectField("Language", choices=["", *LOCALES], default="")


class PasswordResetForm(_Form):
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=200)])


class CannedAnswerForm(_Form):
    language = SelectField("Language", choices=list(LOCALES))
    title = StringField("Title", validators=[DataRequired(), Length(max=100)])
    # 280: a reply must fit the shortest public reply limit the panel serves.
    text = TextAreaField("Text", validators=[DataRequired(), Length(max=280)])


class UserEditForm(_Form):
    role = SelectField("Role", choices=list(ROLES))
    active = BooleanField("Active")


class TokenForm(_Form):
    name = StringField("Name", validators=[DataRequired(), Length(max=100), Regexp(r"^[A-Za-z0-9_.:-]+$")])
    scope = SelectField("Scope", choices=list(SCOPES), default=DEFAULT_SCOPE)
    expires_days = IntegerField("Expires after (days)", validators=[Optional(), NumberRange(1, MAX_EXPIRY_DAYS)])
