-- Databases orion-etl expects on the Docker stack (scripts/stack.sh creates the same ones).
CREATE DATABASE orion_source;
CREATE DATABASE orion_warehouse;
