"""`python -m bench [--scale tiny|quick|full] [--out DIR] [--no-md]`."""

from bench.main import main

raise SystemExit(main())
