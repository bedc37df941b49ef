-- The warehouse example's database: its tables, its audit log and its lease (pipeline.yaml audit.conn_id).
CREATE DATABASE warehouse OWNER airflow;
-- The shared audit store (connection flamingock_audit): the audit log and lease of pipelines without a store of
-- their own (the events example). Every Celery worker reaches the same one.
CREATE DATABASE flamingock OWNER airflow;
-- The tenants example (a fleet): one database per tenant (connections tenant_<name>_db).
CREATE DATABASE tenant_acme OWNER airflow;
CREATE DATABASE tenant_globex OWNER airflow;
CREATE DATABASE tenant_initech OWNER airflow;
