"""Render a ${PE_*} template from the environment (set by `eval "$(python3 -m flink_jobs.config --shell)"`).
Fails on a placeholder that has no value, so a typo never yields a half-configured service."""

import os
import string
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as fh:
    text = string.Template(fh.read()).substitute(os.environ)
with open(dst, "w", encoding="utf-8") as fh:
    fh.write(text)
