"""Alerting: from anomaly episodes to people.

A pure core split the way Alertmanager's is (model: labels, matchers, fingerprints; routing: the
route tree; dispatch: groups and their timers; inhibit; silence; flapping; nflog: what was sent), and
thin adapters at the edge (payloads and signing are pure too; delivery does the HTTP).
"""
