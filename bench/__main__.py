"""`python -m bench [--scale tiny|quick|full] [--backend duckdb|postgres] [--out DIR] [--no-md]`."""

from bench.main import main

raise SystemExit(main())
