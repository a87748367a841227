"""A job with the profile job's source, key and profile operator uid that writes each user's profile
state with a layout version byte no release reads. Restoring the real job from its savepoint shows
what an unreadable state does to the profile operator (test_reliability.py)."""

import argparse
import sys
from collections.abc import Iterable, Sequence

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from flink_jobs import connectors, profile_job, state_guard
from flink_jobs.config import Config
from flink_jobs.operators import PROFILE_STATE
from udfs.profile import STATE_VERSION

FOREIGN_VERSION = STATE_VERSION + 1


class WriteForeignState(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(ValueStateDescriptor(PROFILE_STATE, Types.STRING()))

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterable[str]:  # noqa: ANN001
        self.state.update(chr(FOREIGN_VERSION) + "\x00")  # version byte + (any) body, as latin-1 text
        yield ctx.get_current_key()


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    cfg = Config.from_args(parser.parse_args(argv))
    env = profile_job.environment(cfg)
    by_user, _dead = connectors.split_and_key(state_guard.guard(connectors.event_source(env, cfg), cfg))
    by_user.process(WriteForeignState(), output_type=Types.STRING()).name("profile").uid("profile").print()
    env.execute("profile-engine-foreign-state")


if __name__ == "__main__":
    main(sys.argv[1:])
