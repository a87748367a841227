"""A job with the profile job's source, batching, key and profile operator uid that writes each
user's profile state (per-user keyed state, switched inside a batch like the real operator) with a
layout version byte no release reads. Restoring the
real job from its savepoint shows what an unreadable state does to the profile operator
(test_reliability.py)."""

import argparse
import json
import sys
from collections.abc import Iterable, Sequence

from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from flink_jobs import connectors, profile_job, state_guard
from flink_jobs.config import Config
from flink_jobs.operators import keyed_state_access, profile_state_descriptor
from udfs.profile import STATE_VERSION, Event

FOREIGN_VERSION = STATE_VERSION + 1


class WriteForeignState(KeyedProcessFunction):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def open(self, runtime_context: RuntimeContext) -> None:
        state = runtime_context.get_state(profile_state_descriptor(self.cfg))
        self.access = keyed_state_access(runtime_context, state, self.cfg.max_parallelism)

    def process_element(self, value, ctx: KeyedProcessFunction.Context) -> Iterable[str]:  # noqa: ANN001
        if value[0].startswith("{"):  # commit marker
            return
        for item in json.loads(value[0]):
            user = Event(*item).user_id
            self.access.putAll([user], [chr(FOREIGN_VERSION) + "\x00"])  # version byte + (any) body, as latin-1
            yield user


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    cfg = Config.from_args(parser.parse_args(argv))
    env = profile_job.environment(cfg)
    batches, _dead = connectors.split_and_batch(state_guard.guard(connectors.event_source(env, cfg), cfg), cfg)
    batches.process(WriteForeignState(cfg), output_type=Types.STRING()).name("profile").uid("profile").print()
    env.execute("profile-engine-foreign-state")


if __name__ == "__main__":
    main(sys.argv[1:])
