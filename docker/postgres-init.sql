-- The warehouse example's database: its tables, its audit log and its lease (pipeline.yaml audit.conn_id).
CREATE DATABASE warehouse OWNER airflow;
