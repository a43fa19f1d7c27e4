"""Closing the loop: what happens after the callback, and the proof that it pays.

* :mod:`.notifiers` - the ``[notifiers.*]`` instances (``hub_register_notifiers``);
* :mod:`.contact_rules` - cooldown, opt-out and suppression list, quiet hours;
* :mod:`.invitations` - the invitation outbox (queued, claimed, sent once, retried);
* :mod:`.resurvey` - re-survey invitations after a completed follow-up (or, for
  the control group, after the time a callback would have taken);
* :mod:`.promoters` - review / referral requests to promoters;
* :mod:`.control_group` - the randomised control group of detractors held out
  of callbacks;
* :mod:`.outcomes` - the outcome ledger per case and treated-vs-control report;
* :mod:`.revenue` - revenue at risk vs recovered (the complaints-and-revenue model).

Part of the engine: may import ``hub.sdk``, ``hub.storage`` and ``hub.config``.
"""
