"""Example feedback-hub plugin: customers of listed email domains are VIPs.

Uses two hooks: ``hub_configure`` to read its own ``[vip]`` table and
``hub_score_feedback`` to add a signal.
"""

from hub.sdk import Signal, hookimpl

_settings = {"domains": [], "weight": 30}


@hookimpl
def hub_configure(config):
    _settings.update(config.get("vip", {}))


@hookimpl
def hub_score_feedback(item, context):
    email = (item.customer.email or "").lower()
    domain = email.rpartition("@")[2]
    if domain and domain in {d.lower() for d in _settings["domains"]}:
        return [Signal("vip_customer", float(_settings["weight"]), f"VIP domain {domain}")]
    return None
