"""Rewrite the configuration table of README.md from flink_jobs.config (keeps docs and code in step).

    python -m tools.gen_config_table
"""

from __future__ import annotations

import dataclasses

from flink_jobs.config import ROOT, Config

HEADER = "| setting | env var | default | meaning |"


def table() -> str:
    rows = [HEADER, "|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        rows.append(f"| `{f.name}` | `{Config.env_var(f.name)}` | `{f.default}` | {f.metadata['doc']} |")
    return "\n".join(rows)


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text()
    start = text.index(HEADER)
    end = text.index("\n\n", start)
    path.write_text(text[:start] + table() + text[end:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
