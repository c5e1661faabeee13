"""`python -m app gate`: ask the server's /compare for a verdict and print a short table."""

from __future__ import annotations

import argparse
from typing import Any

import httpx

from app.core.config import Settings


def _table(answer: dict[str, Any]) -> list[str]:
    lines = [f"{'category':<16}{'tests':>8}"]
    lines += [f"{name:<16}{n:>8}" for name, n in answer["counts"].items()]
    for name in ("newly_failing", "missing"):
        for row in answer.get(name, [])[:10]:
            lines.append(f"  {name}: {row['model_name']} {row['test_id']}")
    for m in answer["metrics"]:
        if m["verdict"] in ("regression", "improvement"):
            rel = m["relative_change"]
            lines.append(f"  {m['verdict']}: {m['metric']} {m['hardware']} {rel:+.1%}")
    return lines


def run_gate(args: argparse.Namespace, client: Any = None) -> int:
    """Print the comparison of base and head; return 0 (pass), 1 (fail) or 2 (cannot tell)."""
    params = {"base": args.base, "head": args.head, "fail_on": args.fail_on}
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        if client is None:
            settings = Settings()
            url = args.url or f"http://{settings.host}:{settings.port}"
            with httpx.Client(base_url=url, timeout=60) as http:
                response = http.get("/api/test/db/compare", params=params, headers=headers)
        else:
            response = client.get("/api/test/db/compare", params=params, headers=headers)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the server: {exc}")
        return 2
    if response.status_code != 200:
        print(f"error: {response.status_code} {response.text[:500]}")
        return 2
    answer = response.json()
    verdict = answer["verdict"]
    print("\n".join(_table(answer)))
    print(f"{verdict['status'].upper()}: " + ("; ".join(verdict["reasons"]) or "no rule failed"))
    return 1 if verdict["status"] == "fail" else 0
