"""Process life: a second SIGTERM/SIGINT ends the drain at once, and a shard that fails to start
makes the process exit 1 with one error line (every shard that did start is stopped and joined)
instead of hanging.

Start failures are provoked with resource limits set in the child (preexec_fn), which makes them
deterministic: a 1 GiB RLIMIT_STACK is every thread's stack, so RLIMIT_AS = 3 GiB lets exactly
two shard threads exist; 4 GiB of receive buffers per shard under RLIMIT_AS = 6 GiB let exactly
one shard finish its setup. ASan reserves terabytes of shadow memory, so those cases skip there.
"""

import os
import re
import resource
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import OP_CLOSE, RawClient, Server, scale  # noqa: E402

GIB = 1 << 30


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("ringcast: [error]")]


class SecondSignal(unittest.TestCase):
    def tearDown(self):
        if getattr(self, "srv", None) is not None:
            self.srv.kill()

    def drain_then_signal_again(self, first, second):
        # The drain would last 8 s (32 s under ASan); the client never answers the 1001.
        drain_s = scale(8)
        self.srv = srv = Server(2, drain_timeout_ms=int(drain_s * 1000),
                                close_timeout_ms=600000).start()
        with RawClient.upgraded(srv.port) as c:
            started = time.monotonic()
            srv.send_signal(first)
            # The 1001 proves the first signal was taken before the second is sent.
            f = c.recv_frame(timeout=scale(5))
            self.assertEqual((f.opcode, f.close_code), (OP_CLOSE, 1001), f)
            time.sleep(0.5)
            self.assertTrue(srv.alive(), "exited before the second signal:\n"
                            + harness.tail(srv.log()))
            srv.send_signal(second)
            # A bound, not a measurement: well before the drain deadline.
            rc = srv.wait(max(0.1, drain_s / 2 - (time.monotonic() - started)))
            if rc is None:
                srv.kill()
                self.fail("still draining %.1fs after the first signal although a second one "
                          "was sent; output:\n%s" % (drain_s / 2, harness.tail(srv.log())))
            c.expect_eof(timeout=scale(2))
        srv.check_exit(rc, 0)
        self.assertIn("ending the drain now", srv.log())
        srv.cleanup()

    def test_second_sigterm_ends_the_drain(self):
        """SIGTERM, then SIGTERM at ~0.5 s with a silent client: exit 0 long before the
        drain deadline, and the client sees the 1001 then EOF."""
        self.drain_then_signal_again(signal.SIGTERM, signal.SIGTERM)

    def test_sigint_after_sigterm_ends_the_drain(self):
        """Any mix of SIGTERM and SIGINT counts as the second signal."""
        self.drain_then_signal_again(signal.SIGTERM, signal.SIGINT)


@unittest.skipIf(harness.ASAN, "resource limits on address space do not fit ASan's shadow")
@unittest.skipIf(harness.REF, "ringcast's start-up only")
class StartFailure(unittest.TestCase):
    def run_limited(self, limits, *flags):
        def apply_limits():
            for res, value in limits:
                resource.setrlimit(res, (value, value))

        argv = [harness.BIN, "--port", "0", "--address", "127.0.0.1", "--pin_shards=false",
                "--stats_interval_ms=0", "--log_level=error", *flags]
        try:
            return subprocess.run(argv, preexec_fn=apply_limits, capture_output=True,
                                  text=True, timeout=scale(20), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("the process hung after a shard failed to start; output:\n%s"
                      % (e.stderr or ""))

    def assert_one_error(self, r, pattern):
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertNotIn("ready on", r.stderr)
        errors = error_lines(r.stderr)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertRegex(errors[0], pattern)

    def test_thread_creation_failure_exits_1(self):
        """Shard 2's thread cannot be created: shards 0 and 1 are stopped and joined, one
        line names shard 2, exit 1."""
        r = self.run_limited([(resource.RLIMIT_STACK, GIB), (resource.RLIMIT_AS, 3 * GIB)],
                             "--shards", "8", "--recv_buffers", "16",
                             "--recv_buffer_bytes", "1024")
        self.assert_one_error(r, r"shard 2: cannot start: ")

    def test_shard_setup_failure_exits_1(self):
        """Three of four shards fail their setup on their own threads (no memory for their
        receive buffers); the one that started is stopped and joined; one line, exit 1."""
        r = self.run_limited([(resource.RLIMIT_AS, 6 * GIB)], "--shards", "4",
                             "--recv_buffers", "4096", "--recv_buffer_bytes", "1m")
        self.assert_one_error(r, r"shard \d: mmap 4096 receive buffers: .*"
                                 r"\(3 of 4 shards failed to start\)$")

    def test_many_shards_under_low_address_space(self):
        """The reported case: 120 shards under a low `ulimit -v` exit 1 with one line."""
        r = self.run_limited([(resource.RLIMIT_AS, GIB)], "--shards", "120")
        self.assert_one_error(r, r"shard \d+: ")


if __name__ == "__main__":
    harness.main(budget_s=120)
