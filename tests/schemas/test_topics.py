from logtide.schemas import Topics


def test_default_prefix_and_names() -> None:
    t = Topics()
    assert t.all() == [
        "logtide.logs.raw",
        "logtide.metrics.raw",
        "logtide.logs.enriched",
        "logtide.metrics.agg",
        "logtide.anomalies",
        "logtide.deadletter",
    ]
    assert Topics("acme-").anomalies == "acme-anomalies"
