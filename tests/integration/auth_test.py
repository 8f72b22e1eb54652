"""Access tokens (auth_secret): /ws refuses a handshake without a valid token (401), accepts
one in ?token= or Authorization: Bearer, honours expiry and the "pub" claim; POST /publish
needs a token allowing publishing (401 without, 403 with pub false); /echo stays open."""
import importlib.util
import json
import os
import urllib.error
import urllib.request

import asyncio
import websockets

import harness
from harness import ServerTestCase

spec = importlib.util.spec_from_file_location(
    "mint", os.path.join(harness.REPO, "tools", "mint-token.py"))
mint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mint)
SECRET = "test-secret"


def status_of(port, path, headers=()):
    c = harness.RawClient(port)
    try:
        return c.handshake(path, headers=headers, expect=None).status
    finally:
        c.close()


def post(port, body, token=None):
    req = urllib.request.Request("http://127.0.0.1:%d/publish" % port, data=body.encode(),
                                 method="POST")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


class AuthTest(ServerTestCase):
    server_opts = {"auth_secret": SECRET}

    def test_ws_without_token_is_401(self):
        c = harness.RawClient(self.port)
        try:
            resp = c.handshake("/ws", expect=None)
        finally:
            c.close()
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.header("www-authenticate"), 'Bearer realm="ringcast"')

    def test_ws_with_token_in_query_or_header(self):
        tok = mint.mint(SECRET)
        self.assertEqual(status_of(self.port, "/ws?token=" + tok), 101)
        self.assertEqual(status_of(self.port, "/ws", [("Authorization", "Bearer " + tok)]),
                         101)

    def test_bad_and_expired_tokens_are_401(self):
        self.assertEqual(status_of(self.port, "/ws?token=" + mint.mint("other-secret")), 401)
        self.assertEqual(status_of(self.port, "/ws?token=" + mint.mint(SECRET, ttl=-10)), 401)
        self.assertEqual(status_of(self.port, "/ws?token=garbage.garbage"), 401)

    def test_echo_needs_no_token(self):
        self.assertEqual(status_of(self.port, "/echo"), 101)

    def test_pub_claim_governs_client_publishing(self):
        async def go():
            url = "ws://127.0.0.1:%d/ws?token=" % self.port
            reader = await websockets.connect(url + mint.mint(SECRET))
            writer = await websockets.connect(url + mint.mint(SECRET, pub=True))
            await reader.send(json.dumps({"op": "sub", "topic": "auth.t"}))
            await reader.recv()
            await reader.send(json.dumps({"op": "pub", "topic": "auth.t", "data": 1}))
            self.assertEqual(json.loads(await reader.recv())["code"], 15)
            await writer.send(json.dumps({"op": "pub", "topic": "auth.t", "data": 2}))
            self.assertEqual(json.loads(await writer.recv())["seq"], 1)
            self.assertEqual(json.loads(await reader.recv())["data"], 2)
            await reader.close()
            await writer.close()
        asyncio.run(go())

    def test_http_publish_needs_a_pub_token(self):
        body = json.dumps({"topic": "auth.h", "data": 1})
        self.assertEqual(post(self.port, body)[0], 401)
        self.assertEqual(post(self.port, body, mint.mint(SECRET))[0], 403)
        self.assertEqual(post(self.port, body, mint.mint(SECRET, pub=True)), (200, {"seq": 1}))


if __name__ == "__main__":
    harness.main()
