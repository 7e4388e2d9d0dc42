-- MLflow's registry lives in a database of its own beside the product's (deploy/compose.yaml).
CREATE DATABASE mlflow;
