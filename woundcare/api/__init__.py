"""HTTP API: one module a resource. Domain errors become HTTP errors here only."""
