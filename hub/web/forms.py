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
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp

from hub.engine.accounts import ROLES
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


class PlanForm(_Form):
    due = DateTimeLocalField("Callback at", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                             validators=[DataRequired()])


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


class UserEditForm(_Form):
    role = SelectField("Role", choices=list(ROLES))
    active = BooleanField("Active")


class TokenForm(_Form):
    name = StringField("Name", validators=[DataRequired(), Length(max=100), Regexp(r"^[A-Za-z0-9_.:-]+$")])
