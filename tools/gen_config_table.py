"""Rewrite the configuration table of README.md from flink_jobs.config (keeps docs and code in step).

    python -m tools.gen_config_table
"""

from __future__ import annotations

import dataclasses

from flink_jobs.config import RANGES, ROOT, Config, _hints, _span, choices

HEADER = "| setting | env var | default | allowed | meaning |"


def allowed(name: str) -> str:
    """The values a setting accepts, as Config checks them."""
    hint = _hints()[name]
    if choices(name):
        return ", ".join(f"`{c}`" for c in choices(name))
    if hint is bool:
        return "`true`, `false`"
    lo, hi = RANGES.get(name, (None, None))
    if hint in (int, float) and (lo is not None or hi is not None):
        return _span(lo, hi)
    return ""


def table() -> str:
    rows = [HEADER, "|---|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        rows.append(
            f"| `{f.name}` | `{Config.env_var(f.name)}` | `{f.default}` | {allowed(f.name)} | {f.metadata['doc']} |"
        )
    return "\n".join(rows)


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text()
    start = text.index("| setting | env var | default |")
    end = text.index("\n\n", start)
    path.write_text(text[:start] + table() + text[end:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
