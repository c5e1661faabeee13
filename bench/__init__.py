"""`make bench`: the product measured against raw DuckDB doing the same work in the same run."""
