"""acme_reviews: product reviews from the (fictional) Acme Reviews API.

The source of the tutorial docs/writing_a_source_plugin.md.  It pulls a
product's reviews page by page and takes signed webhooks for new ones; each
review becomes one feedback item.
"""

from __future__ import annotations

import datetime as dt

from hub.sdk import (
    BodyTokenPaginator,
    CustomerRef,
    FeedbackIn,
    IdentityKind,
    RawIn,
    Setting,
    SourceConnector,
    Stream,
    WebhookRejected,
    WebhookResult,
    hookimpl,
    webhooks,
)


class ReviewsStream(Stream):
    name = "reviews"
    path = "/v1/products/{product_id}/reviews"  # {product_id} comes from the instance's settings
    cursor_field = "updated_at"  # ISO times: compared as text
    is_sorted = True  # asked oldest first, so the cursor may move after every page
    raw_kind = "review"
    # Acme puts a next_cursor on every page, the last one too; has_more says whether to follow it.
    paginator = BodyTokenPaginator("next_cursor", has_more_path="has_more")

    def request_params(self, cursor, page_token, since):
        start = since.isoformat() if since else cursor
        params = {"sort": "updated_at", "limit": self.connector.config["page_size"]}
        if start:
            params["updated_after"] = start
        if page_token:
            params["cursor"] = page_token
        return params

    def parse_records(self, response):
        return response.json()["reviews"]

    def dedupe_key(self, record):
        return str(record["id"])  # the same review from a pull and from a webhook is stored once


class AcmeReviews(SourceConnector):
    plugin_name = "acme_reviews"
    description = "product reviews from Acme Reviews (pull and signed webhooks)"
    default_base_url = "https://api.acme-reviews.example"
    settings = [
        Setting("token", secret=True, required=True, help="API token, e.g. env:ACME_REVIEWS_TOKEN"),
        Setting("product_id", required=True, help="the product whose reviews are read"),
        Setting("webhook_secret", secret=True, help="signing secret of the webhook; without it deliveries are refused"),
        Setting("page_size", type=int, default=50, minimum=1, maximum=100, help="reviews per request (Acme allows 100)"),
    ]

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.config['token']}"}

    def streams(self):
        return [ReviewsStream(self)]

    def normalize(self, raw: RawIn) -> list[FeedbackIn]:
        review = raw.payload
        if review.get("status") == "removed":
            return []  # taken down by Acme's moderators: nothing to answer
        author = review["author"]
        return [FeedbackIn(
            external_id=str(review["id"]),
            channel="social",  # a review is public: others read it
            occurred_at=dt.datetime.fromisoformat(review["created_at"]),
            text=review.get("body"),
            language=review.get("language"),
            sentiment=(review["stars"] - 3) / 2,  # 1..5 stars as -1..1: the reviewer's own verdict
            url=review.get("url"),
            # The reviewer's Acme account id is how Acme knows them; an e-mail only when they left one.
            customer=CustomerRef(name=author.get("name"), email=author.get("email"),
                                 handles=(("acme_reviewer", str(author["id"])),)),
            extra={"stars": review["stars"]},
        )]

    def handle_webhook(self, request):
        secret = self.config.get("webhook_secret")
        if not secret:
            raise WebhookRejected(401, "this instance has no webhook_secret: deliveries are refused")
        # Acme signs "<timestamp>.<body>" with HMAC-SHA256, hex, "sha256=" in front.
        timestamp = webhooks.header(request.headers, "X-Acme-Timestamp") or ""
        webhooks.verify_hmac(secret, f"{timestamp}.".encode() + request.body,
                             webhooks.header(request.headers, "X-Acme-Signature"),
                             prefix="sha256=", encoding="hex", header_name="X-Acme-Signature")
        # Signed, but maybe an old delivery sent again: refuse anything older than five minutes.
        webhooks.check_timestamp(timestamp, self.clock, max_age=300, header_name="X-Acme-Timestamp")
        # Whatever the body holds, the answer is a 2xx or a 4xx, never an exception: check what is read.
        event = webhooks.json_body(request)
        if not isinstance(event, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        if event.get("type") not in ("review.created", "review.updated"):
            return WebhookResult(body={"ok": True, "ignored": str(event.get("type"))})
        review = event.get("review")
        if not isinstance(review, dict) or not isinstance(review.get("id"), str | int):
            raise WebhookRejected(400, "the event has no review with an id")
        return WebhookResult(raw_events=[RawIn(payload=review, dedupe_key=str(review["id"]), kind="review")])


@hookimpl
def hub_register_connectors():
    return [AcmeReviews]


@hookimpl
def hub_register_identity_kinds():
    # Not reachable: Acme has no way to call or mail a reviewer, so a reviewer
    # known only by this id gets a follow-up through routing.unreachable.
    return [IdentityKind("acme_reviewer", reachable=False, label="Acme Reviews", display="{value} on Acme Reviews")]
