"""Backfill orders.total_cents from order lines (orders written before totals were stored)."""

ID = "backfill-order-totals"
AUTHOR = "bob"
DESCRIPTION = "Compute total_cents for every order that has none yet"
RISK = "rewrite"  # updates existing rows; Python code is not analysed, so say it here


def check(ctx):
    """Only backfill once every order line has a price."""
    cur = ctx.target.cursor()
    cur.execute("SELECT count(*) FROM order_lines WHERE unit_cents IS NULL")
    unpriced = cur.fetchone()[0]
    return True if unpriced == 0 else f"{unpriced} order lines have no unit_cents yet"


def apply(ctx):
    cur = ctx.target.cursor()
    cur.execute(
        "UPDATE orders SET total_cents = ("
        " SELECT SUM(quantity * unit_cents) FROM order_lines WHERE order_lines.order_id = orders.order_id)"
        " WHERE total_cents IS NULL"
    )
    ctx.log.info("backfilled %s order totals", cur.rowcount)


def rollback(ctx):
    ctx.target.cursor().execute("UPDATE orders SET total_cents = NULL")
