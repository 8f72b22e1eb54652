"""Access tokens are standard JWTs, minted here with PyJWT (Debian python3-jwt) and keys made
with its cryptography backend: every algorithm (HS256/384/512 with token_hmac_secret, RS256 and
ES256 with a PEM key or a JWKS file chosen by kid) opens /ws; forged, expired, not-yet-valid,
wrong-kid, alg none, HS/RS confusion and oversized tokens get 401, each counted under its
reason in ringcast_auth_failures_total. Rights: subs/pubs topic patterns on sub, pub and
POST /publish; channel tokens for one subscription; refresh on an open connection (same sub,
new expiry); aud/iss checks; the JWKS reloaded on SIGHUP and when the file changes."""
import asyncio
import base64
import hashlib
import hmac
import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import jwt
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import harness
from harness import ServerTestCase, scale

spec = importlib.util.spec_from_file_location(
    "mint", os.path.join(harness.REPO, "tools", "mint-token.py"))
mint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mint)

SECRET = "auth-test-secret-of-at-least-32-bytes"
KEYDIR = tempfile.mkdtemp(prefix="ringcast-keys-")


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key, kid):
    pub = key.public_key()
    algo = RSAAlgorithm if isinstance(pub, rsa.RSAPublicKey) else ECAlgorithm
    d = json.loads(algo.to_jwk(pub))
    d["kid"] = kid
    return d


def write_jwks(path, *keys):
    """keys: (private key, kid) pairs. Written to a new file then renamed: never half read."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"keys": [jwk(k, kid) for k, kid in keys]}, f)
    os.replace(tmp, path)


PEM_EC = ec_key()            # token_public_key_file: ES256 tokens without kid
JWKS_RSA = rsa_key()         # in the JWKS as "r1"
JWKS_EC = ec_key()           # in the JWKS as "e1"
OTHER_RSA = rsa_key()        # known to nobody
PEM_PATH = os.path.join(KEYDIR, "public.pem")
JWKS_PATH = os.path.join(KEYDIR, "jwks.json")
with open(PEM_PATH, "wb") as _f:
    _f.write(pem_public(PEM_EC))
write_jwks(JWKS_PATH, (JWKS_RSA, "r1"), (JWKS_EC, "e1"))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header, claims, key=b""):
    """A token built by hand (what no library will make): HS256 over header.claims."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(key, head.encode(), hashlib.sha256).digest() if key else b""
    return head + "." + b64(sig)


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


def failures(port):
    """ringcast_auth_failures_total summed over shards, by reason."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^ringcast_auth_failures_total\{shard="\d+",reason="(\w+)"\} (\d+)$',
                         text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(r"^ringcast_%s\{[^}]*\} (\d+)$" % name, text, re.M))


def run(coro, timeout=20):
    asyncio.run(asyncio.wait_for(coro, scale(timeout)))


async def connect(port, token):
    return await websockets.connect("ws://127.0.0.1:%d/ws?token=%s" % (port, token),
                                    ping_interval=None, open_timeout=scale(10))


async def ask(ws, msg):
    await ws.send(json.dumps(msg))
    return json.loads(await asyncio.wait_for(ws.recv(), scale(5)))


class AuthTest(ServerTestCase):
    server_opts = {"token_hmac_secret": SECRET, "token_public_key_file": PEM_PATH,
                   "token_jwks_file": JWKS_PATH, "ping_interval_ms": 0}

    def refused(self, token, reason):
        before = failures(self.port).get(reason, 0)
        self.assertEqual(status_of(self.port, "/ws?token=" + token), 401, reason)
        self.assertEqual(failures(self.port).get(reason, 0) - before, 1, reason)

    def test_ws_without_token_is_401(self):
        c = harness.RawClient(self.port)
        try:
            resp = c.handshake("/ws", expect=None)
        finally:
            c.close()
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.header("www-authenticate"), 'Bearer realm="ringcast"')

    def test_every_algorithm_opens(self):
        tokens = [mint.mint(SECRET, "u", alg=a) for a in ("HS256", "HS384", "HS512")]
        tokens += [mint.mint(pem_private(JWKS_RSA), "u", alg="RS256", kid="r1"),
                   mint.mint(pem_private(JWKS_EC), "u", alg="ES256", kid="e1"),
                   mint.mint(pem_private(PEM_EC), "u", alg="ES256"),
                   # without kid, the only RS256 key is the one
                   mint.mint(pem_private(JWKS_RSA), "u", alg="RS256")]
        for tok in tokens:
            self.assertEqual(status_of(self.port, "/ws?token=" + tok), 101,
                             jwt.get_unverified_header(tok))
        tok = tokens[-2]
        self.assertEqual(status_of(self.port, "/ws", [("Authorization", "Bearer " + tok)]), 101)

    def test_echo_needs_no_token(self):
        self.assertEqual(status_of(self.port, "/echo"), 101)

    def test_forged_tokens(self):
        self.refused(mint.mint("another-secret-that-is-long-enough!!", "u"), "signature")
        self.refused(mint.mint(pem_private(OTHER_RSA), "u", alg="RS256", kid="r1"), "signature")
        good = mint.mint(pem_private(JWKS_RSA), "u", alg="RS256", kid="r1")
        flip = "A" if good[-20] != "A" else "B"
        self.refused(good[:-20] + flip + good[-19:], "signature")
        self.refused("garbage.garbage.garbage", "malformed")
        self.refused("a.b", "malformed")
        # Padding and the standard alphabet are not base64url.
        good = mint.mint(SECRET, "u")
        self.refused(good + "=", "malformed")
        self.refused(good.replace("-", "+").replace("_", "/") if ("-" in good or "_" in good)
                     else good[:-1] + "+", "malformed")

    def test_time_claims(self):
        self.refused(mint.mint(SECRET, "u", ttl=-10), "expired")
        self.refused(mint.mint(SECRET, "u", nbf=int(time.time()) + 600), "not_yet_valid")
        self.refused(mint.mint(SECRET, "u", now=time.time() + 600), "not_yet_valid")
        self.refused(mint.mint(SECRET, "u", exp="tomorrow"), "claims")

    def test_wrong_kid(self):
        self.refused(mint.mint(pem_private(JWKS_RSA), "u", alg="RS256", kid="nope"), "key")
        # An EC key's kid on an RS256 token: one kind of key never checks another's signature.
        self.refused(mint.mint(pem_private(JWKS_RSA), "u", alg="RS256", kid="e1"), "algorithm")

    def test_alg_none_and_confusion(self):
        claims = {"sub": "u", "exp": int(time.time()) + 600}
        self.refused(hand_made({"alg": "none", "typ": "JWT"}, claims), "algorithm")
        self.refused(hand_made({"alg": "None"}, claims), "algorithm")
        # HS256 keyed with the public key as if it were the secret (the classic confusion).
        self.refused(hand_made({"alg": "HS256"}, claims, pem_public(PEM_EC)), "signature")
        self.refused(hand_made({"alg": "HS256", "crit": ["exp"]}, claims, SECRET.encode()),
                     "malformed")

    def test_oversized(self):
        big = mint.mint(SECRET, "u", pad="x" * 5000)
        self.refused(big, "too_large")

    def test_rights_on_sub_and_pub(self):
        async def go():
            ws = await connect(self.port, mint.mint(SECRET, "u1", subs=["orders.eu", "chat.*"],
                                                    pubs=["chat.>"]))
            self.assertEqual((await ask(ws, {"op": "sub", "topic": "orders.eu"}))["op"], "ack")
            self.assertEqual((await ask(ws, {"op": "sub", "topic": "chat.room"}))["op"], "ack")
            for t in ("orders.us", "chat", "chat.room.deep"):
                self.assertEqual((await ask(ws, {"op": "sub", "topic": t}))["code"], 15, t)
            self.assertEqual((await ask(ws, {"op": "pub", "topic": "orders.eu", "data": 1}))
                             ["code"], 15)
            got = await ask(ws, {"op": "pub", "topic": "chat.room", "data": 2})
            self.assertEqual((got["op"], got.get("data")), ("msg", 2))
            await ws.close()
            # Without subs any topic may be subscribed; without pubs nothing published.
            ws = await connect(self.port, mint.mint(SECRET, "u2"))
            self.assertEqual((await ask(ws, {"op": "sub", "topic": "any.thing"}))["op"], "ack")
            self.assertEqual((await ask(ws, {"op": "pub", "topic": "any.thing", "data": 1}))
                             ["code"], 15)
            await ws.close()
        run(go())
        self.assertGreaterEqual(metric(self.port, "subscribes_forbidden_total"), 3)

    def test_http_publish_needs_pubs(self):
        body = json.dumps({"topic": "auth.h", "data": 1})
        self.assertEqual(post(self.port, body)[0], 401)
        self.assertEqual(post(self.port, body, mint.mint(SECRET, "b"))[0], 403)
        self.assertEqual(post(self.port, body, mint.mint(SECRET, "b", pubs=["other"]))[0], 403)
        self.assertEqual(post(self.port, body, mint.mint(SECRET, "b", pubs=["auth.*"])),
                         (200, {"seq": 1}))

    def test_channel_tokens(self):
        async def go():
            ws = await connect(self.port, mint.mint(SECRET, "u7", subs=[]))
            self.assertEqual((await ask(ws, {"op": "sub", "topic": "room.9"}))["code"], 15)
            chan = mint.mint(SECRET, "u7", channel="room.9")
            got = await ask(ws, {"op": "sub", "topic": "room.9", "token": chan})
            self.assertEqual((got["op"], got["topic"]), ("ack", "room.9"))
            # Another topic, another user, or an expired one: error 18.
            for tok, reason in ((chan, "channel"),
                                (mint.mint(SECRET, "u8", channel="room.8"), "subject"),
                                (mint.mint(SECRET, "u7", channel="room.8", ttl=-5), "expired")):
                before = failures(self.port).get(reason, 0)
                got = await ask(ws, {"op": "sub", "topic": "room.8", "token": tok})
                self.assertEqual(got["code"], 18, reason)
                self.assertEqual(failures(self.port).get(reason, 0) - before, 1, reason)
            await ws.close()
        run(go())
        # A channel token is no connection token.
        self.refused(mint.mint(SECRET, "u7", channel="room.9"), "channel")

    def test_refresh_extends_the_connection(self):
        async def go():
            ws = await connect(self.port, mint.mint(SECRET, "u9", ttl=2, pubs=["r.*"]))
            before = metric(self.port, "token_refreshes_total")
            got = await ask(ws, {"op": "refresh",
                                 "token": mint.mint(SECRET, "u9", ttl=3600, pubs=["r.*"])})
            self.assertEqual(got, {"op": "ack", "of": "refresh"})
            self.assertEqual(metric(self.port, "token_refreshes_total") - before, 1)
            for tok in (mint.mint(SECRET, "someone-else"), mint.mint(SECRET, "u9", ttl=-5),
                        "x.y.z"):
                self.assertEqual((await ask(ws, {"op": "refresh", "token": tok}))["code"], 18)
            await asyncio.sleep(3)  # past the first token's exp: still open
            got = await ask(ws, {"op": "pub", "topic": "r.1", "data": 1})
            self.assertEqual((got["op"], got["seq"]), ("ack", 1))
            await ws.close()
        run(go())

    def test_refresh_with_a_shorter_token_closes_at_its_exp(self):
        async def go():
            ws = await connect(self.port, mint.mint(SECRET, "u10", ttl=3600))
            got = await ask(ws, {"op": "refresh", "token": mint.mint(SECRET, "u10", ttl=1)})
            self.assertEqual(got["op"], "ack")
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                while True:
                    await asyncio.wait_for(ws.recv(), scale(10))
            self.assertEqual((cm.exception.rcvd.code, cm.exception.rcvd.reason),
                             (1008, "token expired"))
        run(go())


class AudienceTest(ServerTestCase):
    server_opts = {"token_hmac_secret": SECRET, "token_audience": "ringcast",
                   "token_issuer": "https://backend.example", "token_leeway_ms": 30000,
                   "token_algorithms": "HS512"}

    def test_aud_iss_leeway_and_algorithms(self):
        iss = "https://backend.example"
        ok = mint.mint(SECRET, "u", alg="HS512", aud="ringcast", iss=iss)
        self.assertEqual(status_of(self.port, "/ws?token=" + ok), 101)
        listed = mint.mint(SECRET, "u", alg="HS512", aud=["x", "ringcast"], iss=iss)
        self.assertEqual(status_of(self.port, "/ws?token=" + listed), 101)
        # Expired 10 s ago is within the 30 s leeway.
        late = mint.mint(SECRET, "u", alg="HS512", aud="ringcast", iss=iss, ttl=-10)
        self.assertEqual(status_of(self.port, "/ws?token=" + late), 101)
        before = failures(self.port)
        for tok in (mint.mint(SECRET, "u", alg="HS512", aud="other", iss=iss),
                    mint.mint(SECRET, "u", alg="HS512", iss=iss),
                    mint.mint(SECRET, "u", alg="HS512", aud="ringcast", iss="evil"),
                    mint.mint(SECRET, "u", alg="HS256", aud="ringcast", iss=iss)):
            self.assertEqual(status_of(self.port, "/ws?token=" + tok), 401)
        after = failures(self.port)
        got = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        self.assertEqual(got, {"audience": 2, "issuer": 1, "algorithm": 1})


RELOAD_PATH = os.path.join(KEYDIR, "reload-jwks.json")
RELOAD_KEYS = (rsa_key(), ec_key(), rsa_key())
write_jwks(RELOAD_PATH, (RELOAD_KEYS[0], "k1"))


class ReloadTest(ServerTestCase):
    """The JWKS file is read again on SIGHUP and when it changes; a broken file keeps the old
    keys."""
    server_opts = {"token_jwks_file": RELOAD_PATH}
    path = RELOAD_PATH
    k1, k2, k3 = RELOAD_KEYS

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(KEYDIR, ignore_errors=True)

    def opens(self, key, kid, alg):
        return status_of(self.port, "/ws?token=" + mint.mint(pem_private(key), "u", alg=alg,
                                                              kid=kid)) == 101

    def wait_for(self, cond):
        deadline = time.monotonic() + scale(10)
        while not cond():
            self.assertLess(time.monotonic(), deadline, "the keys were not reloaded")
            time.sleep(0.1)

    def test_reload_on_sighup_and_on_change(self):
        self.assertTrue(self.opens(self.k1, "k1", "RS256"))
        self.assertFalse(self.opens(self.k2, "k2", "ES256"))
        # HS tokens have no secret here: refused for their algorithm.
        self.assertEqual(status_of(self.port, "/ws?token=" + mint.mint(SECRET, "u")), 401)
        write_jwks(self.path, (self.k1, "k1"), (self.k2, "k2"))
        self.server.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.opens(self.k2, "k2", "ES256"))
        # A broken file is logged and the keys in force stay.
        with open(self.path, "w") as f:
            f.write("{not json")
        self.server.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "token keys not reloaded" in self.server.log())
        self.assertTrue(self.opens(self.k2, "k2", "ES256"))
        # Changing the file is enough, without a signal.
        time.sleep(0.05)
        write_jwks(self.path, (self.k3, "k3"))
        self.wait_for(lambda: self.opens(self.k3, "k3", "RS256"))
        self.assertFalse(self.opens(self.k1, "k1", "RS256"))


class ConfigTest(unittest.TestCase):
    def test_bad_token_settings_stop_the_start(self):
        cases = [({"token_hmac_secret": "short"}, "token_hmac_secret", 2),
                 ({"token_algorithms": "HS256,none"}, "'none'", 2),
                 ({"token_jwks_file": "/nonexistent/jwks.json"}, "/nonexistent/jwks.json", 1),
                 ({"token_public_key_file": JWKS_PATH}, "PEM", 1)]
        for opts, needle, code in cases:
            srv = harness.Server(1, **opts)
            srv.port = harness.free_port()
            p = subprocess.run(srv.argv(), capture_output=True, text=True, timeout=scale(10))
            self.assertEqual(p.returncode, code, (opts, p.stderr))
            self.assertIn(needle, p.stderr, opts)


if __name__ == "__main__":
    harness.main()
