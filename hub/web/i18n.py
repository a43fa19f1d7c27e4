"""Dutch and English for the UI: a dictionary, not a framework.

English text is the key (gettext style), so a missing Dutch entry shows the
English words instead of a blank.  The language is the user's own choice
(``User.locale``) or, before sign-in and when unset, the browser's
``Accept-Language``.  ``tests/test_web_i18n.py`` fails when a string used in
a template or view has no Dutch entry.
"""

from __future__ import annotations

from typing import Any

import flask

LOCALES = ("en", "nl")
DEFAULT_LOCALE = "en"


def current_locale() -> str:
    if not flask.has_request_context():
        return DEFAULT_LOCALE
    cached = flask.g.get("locale")
    if cached:
        return cached
    user = flask.g.get("user")
    locale = user.locale if user is not None and user.locale in LOCALES else None
    if locale is None:
        locale = flask.request.accept_languages.best_match(LOCALES, default=DEFAULT_LOCALE)
    if flask.g.get("user") is not None:
        flask.g.locale = locale  # only cache once the user is known
    return locale


def gettext(text: str, **values: Any) -> str:
    """Translate ``text`` and fill ``{name}`` placeholders."""
    out = NL.get(text, text) if current_locale() == "nl" else text
    return out.format(**values) if values else out


#: Readable names for the default scorer's signals; a plugin's own signal
#: shows as its name with spaces.
SIGNAL_LABELS = {
    "nps": "low NPS",
    "churn_language": "churn words",
    "legal_threat": "legal threat",
    "negative_sentiment": "negative tone",
    "public_reach": "public reach",
    "repeat_contact": "repeat contact",
    "customer_value": "customer value",
    "complaint_cue": "complaint words",
    "help_request": "asks for help",
    "shouting": "capitals",
    "profanity": "profanity",
    "angry_emoji": "angry emoji",
    "positive_sentiment": "positive tone",
    "themes": "themes",
    "base_rate": "base rate",
}


#: Readable names for the default taxonomy's themes (``[enrich.themes]``, keys in
#: English); a configured theme of one's own shows as its key with spaces.
THEME_LABELS = {
    "billing": "billing",
    "delivery": "delivery",
    "outage": "outage",
    "staff": "staff",
    "waiting": "waiting time",
    "product": "product",
    "price": "price",
    "app": "app/website",
}


def theme_label(name: str) -> str:
    return gettext(THEME_LABELS.get(name, name.replace("_", " ")))


def signal_label(name: str) -> str:
    return gettext(SIGNAL_LABELS.get(name, name.replace("_", " ")))


def ngettext(singular: str, plural: str, n: int, **values: Any) -> str:
    return gettext(singular if n == 1 else plural, n=n, **values)


# -- Dutch ------------------------------------------------------------------
NL: dict[str, str] = {
    # navigation and shell
    "Inbox": "Inbox",
    "Dashboard": "Dashboard",
    "Admin": "Beheer",
    "Sign out": "Afmelden",
    "Sign in": "Inloggen",
    "Username": "Gebruikersnaam",
    "Password": "Wachtwoord",
    "Language": "Taal",
    "Signed in as {name} ({role})": "Ingelogd als {name} ({role})",
    "Wrong username or password.": "Onjuiste gebruikersnaam of wachtwoord.",
    "Enter your username and password.": "Vul je gebruikersnaam en wachtwoord in.",
    "Too many sign-in attempts. Try again in {seconds} seconds.":
        "Te veel inlogpogingen. Probeer het over {seconds} seconden opnieuw.",
    "Closed-loop feedback: surveys and social media in one inbox.":
        "Closed-loop feedback: enquêtes en social media in één inbox.",
    "You do not have permission for this.": "Je hebt hiervoor geen rechten.",
    "This page does not exist.": "Deze pagina bestaat niet.",
    "The form expired or was not sent from this site. Reload and try again.":
        "Het formulier is verlopen of kwam niet van deze site. Herlaad de pagina en probeer het opnieuw.",
    "Back to the inbox": "Terug naar de inbox",
    "Something went wrong": "Er ging iets mis",
    # roles
    "admin": "beheerder",
    "agent": "medewerker",
    "viewer": "meekijker",
    # channels, categories, statuses
    "survey": "enquête",
    "social": "social",
    "email": "e-mail",
    "phone": "telefoon",
    "chat": "chat",
    "other": "overig",
    "detractor": "criticaster",
    "passive": "passief",
    "promoter": "promotor",
    "new": "nieuw",
    "assigned": "toegewezen",
    "scheduled": "ingepland",
    "contacted": "gecontacteerd",
    "resolved": "opgelost",
    "closed": "gesloten",
    "no case": "geen case",
    "open": "open",
    "pending": "wachtend",
    "sending": "versturen",
    "sent": "verstuurd",
    "failed": "mislukt",
    "dead": "opgegeven",
    "done": "afgerond",
    # inbox
    "Channel": "Kanaal",
    "Source": "Bron",
    "Customer": "Klant",
    "Score / reach": "Score / bereik",
    "Lang.": "Taal",
    "Feedback": "Feedback",
    "Risk": "Risico",
    "Why": "Waarom",
    "Due": "Deadline",
    "Owner": "Eigenaar",
    "Status": "Status",
    "Category": "Categorie",
    "Search text": "Zoek in tekst",
    "all": "alle",
    "any": "alle",
    "Open cases and new feedback": "Open cases en nieuwe feedback",
    "Everything": "Alles",
    "Without case": "Zonder case",
    "me": "ik",
    "unassigned": "niemand",
    "high (70+)": "hoog (70+)",
    "medium (40+)": "middel (40+)",
    "low (<40)": "laag (<40)",
    "Filter": "Filter",
    "Reset": "Wissen",
    "{n} item": "{n} item",
    "{n} items": "{n} items",
    "more than {n} items": "meer dan {n} items",
    "Nothing here: no feedback matches these filters.": "Niets gevonden: geen feedback past bij deze filters.",
    "Previous": "Vorige",
    "Next": "Volgende",
    "Page {n}": "Pagina {n}",
    "{n} new": "{n} nieuw",
    "Live: new feedback appears here as it arrives.": "Live: nieuwe feedback verschijnt hier vanzelf.",
    "reach {n}": "bereik {n}",
    "NPS {n}": "NPS {n}",
    "overdue {d}": "{d} te laat",
    "in {d}": "over {d}",
    "(no text)": "(geen tekst)",
    "unknown customer": "onbekende klant",
    # risk signals (labels from SIGNAL_LABELS)
    "low NPS": "lage NPS",
    "churn words": "opzegtaal",
    "legal threat": "juridische dreiging",
    "negative tone": "negatieve toon",
    "public reach": "publiek bereik",
    "repeat contact": "herhaald contact",
    "customer value": "klantwaarde",
    "complaint words": "klachtwoorden",
    "asks for help": "vraagt om hulp",
    "capitals": "hoofdletters",
    "profanity": "scheldwoorden",
    "angry emoji": "boze emoji",
    "positive tone": "positieve toon",
    "themes": "thema's",
    "base rate": "basiskans",
    # case page
    "Case {id}": "Case {id}",
    "Timeline": "Tijdlijn",
    "oldest first": "oudste eerst",
    "Identities": "Identiteiten",
    "Evidence": "Bewijs",
    "confidence {n}%": "zekerheid {n}%",
    "Risk score": "Risicoscore",
    "How the risk of {n} is made up": "Zo is het risico van {n} opgebouwd",
    "Follow-up": "Terugbelactie",
    "No follow-up planned.": "Geen terugbelactie gepland.",
    "Callback due": "Terugbellen vóór",
    "In system": "In systeem",
    "CRM state": "Status in CRM",
    "CRM reference": "CRM-referentie",
    "Attempts": "Pogingen",
    "Last error": "Laatste fout",
    "Completed": "Afgerond",
    "Actions": "Acties",
    "Assign to me": "Aan mij toewijzen",
    "Assign": "Toewijzen",
    "Assign to": "Toewijzen aan",
    "Add note": "Notitie toevoegen",
    "Note": "Notitie",
    "Plan callback": "Terugbellen plannen",
    "Re-plan callback": "Terugbellen verplaatsen",
    "Callback at": "Terugbellen op",
    "Mark contacted": "Markeer als gecontacteerd",
    "Resolve": "Afsluiten",
    "Outcome": "Uitkomst",
    "Root cause": "Oorzaak",
    "Resolved for the customer?": "Opgelost voor de klant?",
    "yes": "ja",
    "no": "nee",
    "Activity": "Activiteit",
    "No activity yet.": "Nog geen activiteit.",
    "Opened": "Geopend",
    "SLA due": "SLA-deadline",
    "Priority": "Prioriteit",
    "Re-survey NPS": "NPS na hermeting",
    "Resolved": "Opgelost",
    "open original": "origineel openen",
    "this case": "deze case",
    "case {id}": "case {id}",
    "View only: your role cannot change cases.": "Alleen lezen: met jouw rol kun je cases niet wijzigen.",
    "Assigned to {name}.": "Toegewezen aan {name}.",
    "Note added.": "Notitie toegevoegd.",
    "Callback planned for {when}.": "Terugbellen gepland op {when}.",
    "Marked as contacted.": "Gemarkeerd als gecontacteerd.",
    "Case resolved.": "Case afgesloten.",
    "This case is already closed.": "Deze case is al afgesloten.",
    "This case is still open.": "Deze case is nog open.",
    "Case closed.": "Case gesloten.",
    "Case reopened.": "Case heropend.",
    "Close": "Sluiten",
    "Close without callback": "Sluiten zonder terugbellen",
    "Close the case": "Case sluiten",
    "Reason": "Reden",
    "Reopen": "Heropenen",
    "Check the form: {fields}.": "Controleer het formulier: {fields}.",
    "Pick a time in the future.": "Kies een tijdstip in de toekomst.",
    "No such user.": "Deze gebruiker bestaat niet.",
    "callback_done": "teruggebeld",
    "solved_remotely": "op afstand opgelost",
    "compensated": "gecompenseerd",
    "explained": "uitgelegd",
    "not_reachable": "niet bereikbaar",
    "no_action_needed": "geen actie nodig",
    "low": "laag",
    "normal": "normaal",
    "high": "hoog",
    "urgent": "urgent",
    # audit actions
    "case.assigned": "toegewezen",
    "case.note": "notitie",
    "case.callback_planned": "terugbellen gepland",
    "case.contacted": "gecontacteerd",
    "case.resolved": "afgesloten",
    "case.closed": "gesloten",
    "case.reopened": "heropend",
    "case.scheduled": "ingepland",
    "followup.completed": "terugbelactie afgerond",
    # dashboard
    "Last {n} days": "Laatste {n} dagen",
    "NPS": "NPS",
    "Detractors": "Criticasters",
    "Open cases": "Open cases",
    "{n} awaiting contact": "{n} wachten op contact",
    "Overdue": "Te laat",
    "Median time to first contact": "Mediane tijd tot eerste contact",
    "Closed with a re-survey": "Afgesloten met hermeting",
    "NPS and detractor share over time": "NPS en aandeel criticasters in de tijd",
    "detractor share": "aandeel criticasters",
    "Open cases by SLA state": "Open cases per SLA-status",
    "overdue": "te laat",
    "due within 4 h": "binnen 4 u",
    "due today": "vandaag",
    "later": "later",
    "no SLA": "geen SLA",
    "Follow-ups per hour of the day": "Terugbelacties per uur van de dag",
    "call-centre load, {tz}": "belasting callcenter, {tz}",
    "peak hour": "piekuur",
    "Time to first contact": "Tijd tot eerste contact",
    "cases contacted in the period": "cases met contact in deze periode",
    "Share of closed cases with a re-survey": "Aandeel afgesloten cases met hermeting",
    "with re-survey": "met hermeting",
    "without": "zonder",
    "No data in this period.": "Geen gegevens in deze periode.",
    "median": "mediaan",
    "responses": "reacties",
    # admin
    "Connectors": "Connectoren",
    "Users": "Gebruikers",
    "API tokens": "API-tokens",
    "Source instances": "Broninstanties",
    "Follow-up sinks": "Doelsystemen voor terugbelacties",
    "Installed plugins": "Geïnstalleerde plugins",
    "Plugin kinds": "Soorten plugins",
    "Name": "Naam",
    "Plugin": "Plugin",
    "Version": "Versie",
    "Hooks": "Hooks",
    "Kind": "Soort",
    "Last run": "Laatste run",
    "Lag": "Achterstand",
    "Items": "Items",
    "Rate budget": "Verzoekbudget",
    "Details": "Details",
    "never": "nooit",
    "healthy": "gezond",
    "error": "fout",
    "not run yet": "nog niet gedraaid",
    "Pull now": "Nu ophalen",
    "Pull of {name} started.": "Ophalen van {name} gestart.",
    "No source instances are configured.": "Er zijn geen broninstanties ingesteld.",
    "{n} requests / {s} s": "{n} verzoeken / {s} s",
    "{n} left": "nog {n}",
    "paused until {t}": "gepauzeerd tot {t}",
    "none": "geen",
    "follow-up route": "route voor terugbelacties",
    "failing since {since}; follow-ups wait": "storing sinds {since}; terugbelacties wachten",
    "Role": "Rol",
    "Active": "Actief",
    "Created": "Aangemaakt",
    "Create user": "Gebruiker aanmaken",
    "Save": "Opslaan",
    "User {name} saved.": "Gebruiker {name} opgeslagen.",
    "You cannot remove your own admin role.": "Je kunt je eigen beheerdersrol niet afnemen.",
    "Prefix": "Begin",
    "Last used": "Laatst gebruikt",
    "Revoked": "Ingetrokken",
    "Create token": "Token aanmaken",
    "Revoke": "Intrekken",
    "Token {name} revoked.": "Token {name} ingetrokken.",
    "Copy this token now: it is shown only once.": "Kopieer dit token nu: het wordt maar één keer getoond.",
    "active": "actief",
    "inactive": "inactief",
    "revoked": "ingetrokken",
    "browser default": "taal van de browser",
    # themes (drivers)
    "billing": "facturatie",
    "delivery": "levering",
    "outage": "storing",
    "staff": "medewerker",
    "waiting time": "wachttijd",
    "product": "product",
    "price": "prijs",
    "app/website": "app/website",
    "Theme": "Thema",
    "Themes": "Thema's",
    "Top themes among detractors": "Meest genoemde thema's bij criticasters",
    "No detractor mentioned a theme in this period.": "Geen criticaster noemde een thema in deze periode.",
    "{n} detractor": "{n} criticaster",
    "{n} detractors": "{n} criticasters",
}
