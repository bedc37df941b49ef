"""Triggers of the Flamingock provider.

None yet: the lock sensor's ``deferrable`` mode falls back to ``reschedule``, which also frees the
worker slot while waiting. A trigger must ship in this package (the triggerer does not load DAG
bundles), so it will take the lease from the audit/lock settings, not from the pipeline folder.
"""
