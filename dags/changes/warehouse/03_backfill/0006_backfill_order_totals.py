"""Backfill orders.total_cents from order lines (orders written before totals were stored)."""

ID = "backfill-order-totals"
AUTHOR = "bob"
DESCRIPTION = "Compute total_cents for every order that has none yet"


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
