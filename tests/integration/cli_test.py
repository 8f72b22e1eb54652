"""The ringcast command line: --help, --version, config errors, and the README's key table
staying identical to the binary's (the README is generated from the same table)."""
import os
import re
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("RINGCAST_BIN", os.path.join(ROOT, "build", "bin", "ringcast"))


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=20)


class Cli(unittest.TestCase):
    def test_help_lists_every_key_with_default(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for key in ("port", "shards", "idle_timeout_ms", "echo_message_bytes_max",
                    "send_queue_bytes_max", "origins"):
            self.assertRegex(r.stdout, r"--%s=" % key)

    def test_version(self):
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^ringcast \d+\.\d+\.\d+")

    def test_readme_table_matches_binary(self):
        r = run("--print-config-markdown")
        self.assertEqual(r.returncode, 0)
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        m = re.search(r"<!-- config-table:begin -->\n(.*?)<!-- config-table:end -->", readme, re.S)
        self.assertIsNotNone(m, "README lacks the config table markers")
        self.assertEqual(m.group(1).strip(), r.stdout.strip(),
                         "README's key table is stale: regenerate it with "
                         "`tools/readme-config-table.sh`")

    def test_out_of_range_value_names_key_and_range(self):
        r = run("--port=70000")
        self.assertEqual(r.returncode, 2)
        self.assertIn("port", r.stderr)
        self.assertIn("0..65535", r.stderr)

    def test_unknown_key_refused(self):
        r = run("--no_such_key=1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no_such_key", r.stderr)

    def test_cross_key_rule_refused_at_start(self):
        r = run("--frame_bytes_max=2m", "--message_bytes_max=1m", "--port=0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("frame_bytes_max", r.stderr)

    def test_config_file_then_flags_override(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("# test\nport = 9123\nshards = 3\n")
            path = f.name
        try:
            r = run("--config", path, "--shards=1", "--print-config")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("port = 9123", r.stdout)
            self.assertIn("shards = 1", r.stdout)
            with open(path, "w") as f:
                f.write("port = 9123\nbogus line\n")
            r = run("--config", path)
            self.assertEqual(r.returncode, 2)
            self.assertIn(":2:", r.stderr)
        finally:
            os.unlink(path)

    def test_missing_config_file(self):
        r = run("--config", "/nonexistent/ringcast.conf")
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/ringcast.conf", r.stderr)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
