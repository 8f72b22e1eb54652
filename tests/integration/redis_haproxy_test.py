"""The README's HAProxy configuration (section "Several nodes on Redis") in front of two
ringcast nodes on one redis-server: the block is taken from README.md as written, with only its
bind port and server addresses pointed at this test's processes (and maxconn lowered to
what the test host's descriptor limit allows). A client subscribes through
HAProxy, a backend publishes through it, the client's node is killed, and the client comes back
through HAProxy to the other node and resumes with since and epoch, missing nothing.
"""

import asyncio
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import free_port, scale  # noqa: E402
from redis_cluster_test import Client, RedisTestCase, http_publish  # noqa: E402


def readme_config():
    with open(os.path.join(harness.REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"```haproxy\n(.*?)```", text, re.S)
    if not m:
        raise AssertionError("README.md has no ```haproxy block")
    return m.group(1)


@unittest.skipUnless(shutil.which("haproxy"), "needs haproxy (tools/install-deps.sh)")
class HAProxyInFront(RedisTestCase):
    def start_haproxy(self, ports):
        cfg = readme_config()
        self.assertIn("bind :8000", cfg)
        self.port = free_port()
        cfg = cfg.replace("bind :8000", "bind 127.0.0.1:%d" % self.port)
        cfg = re.sub(r"maxconn \d+", "maxconn 2000", cfg)  # within this host's ulimit -n
        servers = re.findall(r"^\s*server \S+ \S+.*$", cfg, re.M)
        self.assertGreaterEqual(len(servers), len(ports))
        for i, line in enumerate(servers):
            new = (re.sub(r"server (\S+) \S+", "server \\1 127.0.0.1:%d" % ports[i], line)
                   if i < len(ports) else "")
            cfg = cfg.replace(line, new)
        fd, path = tempfile.mkstemp(prefix="ringcast-haproxy-", suffix=".cfg")
        with os.fdopen(fd, "w") as f:
            f.write(cfg)
        self.addCleanup(os.unlink, path)
        proc = subprocess.Popen(["haproxy", "-db", "-f", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(harness.kill_group, proc)
        deadline = time.monotonic() + scale(10)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("haproxy exited: %s" % proc.communicate()[0])
            try:
                if http_publish(self.port, "warmup", 0)[0] == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError("haproxy did not pass requests")

    def test_client_resumes_through_haproxy_after_its_node_dies(self):
        nodes = self.start_nodes(2, self.start_redis())
        self.start_haproxy([n.port for n in nodes])

        async def reconnect():
            deadline = time.monotonic() + scale(15)
            while True:
                try:
                    return await Client.connect(self.port)
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)

        async def run():
            c = await Client.connect(self.port)
            epoch = (await c.sub("lb"))["epoch"]
            for i in range(5):
                self.assertEqual(http_publish(self.port, "lb", i)[0], 200)
            await c.until(lambda m: m.get("op") == "msg" and m["seq"] == 5)
            # The node holding the client's connection dies.
            victim = next(n for n in nodes if self.websockets_open(n.port) > 0)
            victim.kill()
            survivor = next(n for n in nodes if n is not victim)
            for i in range(5, 10):
                self.assertEqual(http_publish(survivor.port, "lb", i)[0], 200)
            while True:
                again = await reconnect()
                try:
                    ack = await again.sub("lb", since=5, epoch=epoch)
                    break
                except Exception:
                    continue  # HAProxy sent it to the dead node before its check failed
            self.assertEqual(ack["op"], "ack", ack)
            self.assertEqual([m["data"] for m in again.msgs("lb")], list(range(5, 10)))
            await again.close()
            return victim

        victim = asyncio.run(run())
        self.nodes = [n for n in self.nodes if n is not victim]
        self.check_alive()

    def websockets_open(self, port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=scale(5))
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        return sum(int(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("ringcast_websockets_open{"))


if __name__ == "__main__":
    harness.main(budget_s=90)
