"""The profile job as the next release would submit it if it changed the profile state layout
(STATE_VERSION + 1) without a migration. Restoring a snapshot of the current release with it must
fail: test_reliability.py submits this file with `flink run -py`."""

import sys

from udfs import profile

profile.STATE_VERSION += 1

from flink_jobs import profile_job  # noqa: E402 - after the version bump, as a new release would be

if __name__ == "__main__":
    profile_job.main(sys.argv[1:])
