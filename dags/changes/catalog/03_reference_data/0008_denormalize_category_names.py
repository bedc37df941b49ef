"""Copy each product's category name onto the product, for the storefront view.

Runs in the unit's transaction (``ctx.session``): with the audit log in the same database, the
product updates and this unit's APPLIED entry commit together or not at all.
"""

ID = "denormalize-category-names"
AUTHOR = "dave"
DESCRIPTION = "Set products.category_name from categories.name"


def apply(ctx):
    db, session = ctx.target, ctx.session
    names = {c["code"]: c["name"] for c in db.categories.find({}, {"code": 1, "name": 1}, session=session)}
    missing = 0
    for product in db.products.find({"category_name": {"$exists": False}}, {"category": 1}, session=session):
        name = names.get(product["category"])
        if name is None:
            missing += 1
            continue
        db.products.update_one({"_id": product["_id"]}, {"$set": {"category_name": name}}, session=session)
    if missing:
        raise ValueError(f"{missing} products name an unknown category; seed the category first")


def rollback(ctx):
    ctx.target.products.update_many({}, {"$unset": {"category_name": ""}}, session=ctx.session)
