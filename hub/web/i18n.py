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


#: Readable names for case outcomes (stored as codes): English shows these, not ``callback_done``.
OUTCOME_LABELS = {
    "callback_done": "called back",
    "solved_remotely": "solved remotely",
    "compensated": "compensated",
    "explained": "explained",
    "not_reachable": "not reachable",
    "no_action_needed": "no action needed",
    "contacted": "contacted",
}


def outcome_label(code: str) -> str:
    return gettext(OUTCOME_LABELS.get(code, code.replace("_", " ")))


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
    # tokens and audit: start
    "Scope": "Bereik",
    "Expires": "Verloopt",
    "Expires after (days)": "Verloopt na (dagen)",
    "expired": "verlopen",
    "read: only GET; write: also post feedback and change cases; admin: also delete and erase.":
        "read: alleen GET; write: ook feedback insturen en cases wijzigen; admin: ook verwijderen en wissen.",
    # tokens and audit: end
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
    # webcare workspace: inbox views, bulk actions, case-less items, saved views
    "To do": "Te doen",
    "My callbacks today": "Mijn terugbelacties vandaag",
    "Waiting on customer": "Wacht op klant",
    "Done": "Afgerond",
    "All feedback": "Alle feedback",
    "Inbox views": "Weergaven van de inbox",
    "Callback": "Terugbellen",
    "Latest feedback": "Laatste feedback",
    "Items in this case": "Items in deze case",
    "answered publicly": "publiek beantwoord",
    "more than {n} cases": "meer dan {n} cases",
    "{n} case": "{n} case",
    "{n} cases": "{n} cases",
    "Reload": "Vernieuwen",
    "Pages": "Pagina's",
    "Main": "Hoofdmenu",
    "Menu": "Menu",
    "Skip to the content": "Naar de inhoud",
    "Saved views": "Opgeslagen weergaven",
    "none yet": "nog geen",
    "Name of this view": "Naam van deze weergave",
    "Save this view": "Weergave opslaan",
    "Delete view {name}": "Weergave {name} verwijderen",
    "Give the view a name.": "Geef de weergave een naam.",
    "A view named {name} exists already: pick another name.": "Er is al een weergave {name}: kies een andere naam.",
    "View {name} saved for the team.": "Weergave {name} opgeslagen voor het team.",
    "View {name} deleted.": "Weergave {name} verwijderd.",
    "Select case {id}": "Case {id} selecteren",
    "Select all cases on this page": "Alle cases op deze pagina selecteren",
    "Tick cases to act on several at once": "Vink cases aan om er meer tegelijk te behandelen",
    "{n} selected": "{n} geselecteerd",
    "Tick one or more cases and choose an action.": "Vink een of meer cases aan en kies een actie.",
    "{n} cases assigned to {name}.": "{n} cases toegewezen aan {name}.",
    "{n} cases closed.": "{n} cases gesloten.",
    "{n} already closed, left as they were.": "{n} waren al gesloten en zijn ongewijzigd gelaten.",
    "No callbacks of yours are due today.": "Vandaag staan er voor jou geen terugbelacties.",
    "Nothing here: no case matches these filters.": "Niets te zien: geen case past bij deze filters.",
    "Open case": "Case openen",
    "Dismiss": "Negeren",
    "Dismissed by {name}.": "Genegeerd door {name}.",
    "Dismissed: it no longer waits in the inbox.": "Genegeerd: het wacht niet meer in de inbox.",
    "Older than {n} days when it arrived: too late for a callback.": "Al ouder dan {n} dagen bij binnenkomst: te laat om terug te bellen.",
    "Risk {risk} is below the threshold of {n} and it is no detractor.": "Risico {risk} ligt onder de drempel van {n} en het is geen criticaster.",
    "No case was opened for it.": "Hiervoor is geen case geopend.",
    "This feedback belongs to a case: close the case instead.": "Deze feedback hoort bij een case: sluit de case.",
    "Case {id} opened for this feedback.": "Case {id} geopend voor deze feedback.",
    "Added to the customer's open case {id}.": "Toegevoegd aan de open case {id} van de klant.",
    # webcare workspace: case page, collisions, replies, activity log
    "Not saved: {who} changed this case since you opened it ({what}). Check it and try again.": "Niet opgeslagen: {who} heeft deze case gewijzigd sinds je hem opende ({what}). Bekijk de case en probeer het opnieuw.",
    "A change from an outdated page was refused.": "Een wijziging vanaf een verouderde pagina is geweigerd.",
    "API ({name})": "API ({name})",
    "CRM ({name})": "CRM ({name})",
    "system": "systeem",
    "someone": "iemand",
    "Answered publicly.": "Publiek beantwoord.",
    "Callback completed in the CRM ({outcome}).": "Terugbelactie afgerond in het CRM ({outcome}).",
    "Callback completed in the CRM.": "Terugbelactie afgerond in het CRM.",
    "Callback created for {when}.": "Terugbelactie aangemaakt voor {when}.",
    "Callback pushed to the CRM.": "Terugbelactie naar het CRM gestuurd.",
    "Callback pushed to {sink} ({ref}).": "Terugbelactie naar {sink} gestuurd ({ref}).",
    "Case opened.": "Case geopend.",
    "Closed: {reason}.": "Gesloten: {reason}.",
    "Resolved: {outcome}.": "Opgelost: {outcome}.",
    "Feedback added to this case.": "Feedback aan deze case toegevoegd.",
    "SLA breached: no contact by {when}.": "SLA overschreden: geen contact voor {when}.",
    "This case changed since you opened it.": "Deze case is gewijzigd sinds je hem opende.",
    "Reload to see the changes": "Vernieuw om de wijzigingen te zien",
    "{names} also has this case open.": "{names} heeft deze case ook open.",
    "Reply in public": "Publiek reageren",
    "Canned answers": "Standaardantwoorden",
    "Reply text": "Tekst van de reactie",
    "Reply on {source}": "Reageren op {source}",
    "Mark answered publicly": "Markeren als publiek beantwoord",
    "Pick the public post you answered.": "Kies het openbare bericht dat je hebt beantwoord.",
    "Recorded: answered publicly.": "Vastgelegd: publiek beantwoord.",
    "dd-mm-yyyy hh:mm": "dd-mm-jjjj uu:mm",
    "called back": "teruggebeld",
    "solved remotely": "op afstand opgelost",
    "not reachable": "niet bereikbaar",
    "no action needed": "geen actie nodig",
    # webcare workspace: end
    # closing the loop: start
    "Unsubscribe": "Afmelden",
    "This unsubscribe link is not valid.": "Deze afmeldlink is niet geldig.",
    "Do you want to stop receiving surveys from {company}?": "Wilt u geen enquêtes meer ontvangen van {company}?",
    "Done: you will receive no more surveys from {company}.": "Gelukt: u ontvangt geen enquêtes meer van {company}.",
    "control": "controle",
    "Held out of callbacks (control group): no callback, re-surveyed to measure what callbacks achieve.":
        "Buiten de terugbelacties gehouden (controlegroep): geen terugbelactie, wel een nieuwe enquête om te meten wat terugbellen oplevert.",
    "Revenue at risk": "Omzet in gevaar",
    "told us": "lieten het ons weten",
    "stayed silent": "zwegen",
    "stayed": "bleven",
    "left": "vertrokken",
    "Of {unhappy} unhappy customers, {told} told us and {silent} stayed silent.":
        "Van {unhappy} ontevreden klanten lieten {told} het ons weten en zwegen er {silent}.",
    "Lost: {lost} of {revenue} yearly revenue ({share}).": "Verloren: {lost} van {revenue} jaaromzet ({share}).",
    "Recovered by closed loops: {recovered}.": "Teruggewonnen door gesloten lussen: {recovered}.",
    "Detractors converted, treated vs control": "Criticasters omgezet, behandeld tegenover controle",
    "treated": "behandeld",
    # closing the loop: end
}
