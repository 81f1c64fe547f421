"""Studies: a declarative spec of many training runs, swept on an executor (Ray optional)."""
