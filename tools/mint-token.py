#!/usr/bin/env python3
"""Mints a ringcast access token: base64url(claims JSON) "." base64url(HMAC-SHA256(secret,
first part)), the format src/auth.h verifies. A backend does the same in a few lines in any
language. Usage: tools/mint-token.py SECRET [--sub USER] [--ttl SECONDS] [--pub]"""
import argparse
import base64
import hashlib
import hmac
import json
import time


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, sub=None, ttl=3600, pub=False, now=None):
    claims = {"exp": int((now if now is not None else time.time()) + ttl), "pub": bool(pub)}
    if sub:
        claims["sub"] = sub
    head = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + b64url(mac)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("secret")
    ap.add_argument("--sub")
    ap.add_argument("--ttl", type=int, default=3600)
    ap.add_argument("--pub", action="store_true", help="allow publishing")
    a = ap.parse_args()
    print(mint(a.secret, a.sub, a.ttl, a.pub))
