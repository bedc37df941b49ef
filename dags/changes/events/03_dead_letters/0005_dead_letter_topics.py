"""A dead-letter topic for each feed, created with the confluent-kafka AdminClient of the target."""

from confluent_kafka.admin import NewTopic

ID = "dead-letter-topics"
AUTHOR = "events-team"
DESCRIPTION = "One <feed>.dlq topic per feed, one partition, kept 14 days"

FEEDS = ("clickstream", "orders.v1")
RETENTION_MS = str(14 * 24 * 3600 * 1000)


def apply(ctx):
    admin = ctx.client("admin")
    topics = [NewTopic(f"{feed}.dlq", 1, 1, config={"retention.ms": RETENTION_MS}) for feed in FEEDS]
    for name, future in admin.create_topics(topics).items():
        future.result()  # raises if the broker refused: the unit fails and the stage is rolled back
        ctx.log.info("created dead-letter topic %s", name)


def rollback(ctx):
    admin = ctx.client("admin")
    existing = set(admin.list_topics(timeout=30).topics)
    doomed = [f"{feed}.dlq" for feed in FEEDS if f"{feed}.dlq" in existing]
    for future in admin.delete_topics(doomed).values() if doomed else ():
        future.result()
