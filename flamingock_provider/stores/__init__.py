"""Audit-store and lease backends, one module each: sqlite (embedded), mongo, dynamodb, redis_lease.

Which one a pipeline uses is decided in one place, the composition root
(:mod:`flamingock_provider.core.workspace`, ``STORE_FACTORIES``): a new store is a new module here
plus one line there, and one fixture in the store contract suite (tests/stores).
"""
