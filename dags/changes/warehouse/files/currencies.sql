CREATE TABLE currencies (
  code      TEXT PRIMARY KEY,
  name      TEXT NOT NULL,
  exponent  INTEGER NOT NULL
);
INSERT INTO currencies (code, name, exponent) VALUES ('EUR', 'Euro', 2);
INSERT INTO currencies (code, name, exponent) VALUES ('USD', 'US Dollar', 2);
INSERT INTO currencies (code, name, exponent) VALUES ('GBP', 'Pound Sterling', 2);
INSERT INTO currencies (code, name, exponent) VALUES ('JPY', 'Yen', 0);
