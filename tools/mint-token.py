#!/usr/bin/env python3
"""Mints a ringcast access token: a standard JWT (RFC 7519) made with PyJWT (Debian
python3-jwt), as a backend does with the JWT library of its language. HS256/384/512 take the
gateway's token_hmac_secret; RS256 and ES256 take the private key whose public half is in
token_public_key_file or token_jwks_file (with --kid). Rights are topic patterns (README,
"Access tokens"). Examples:
  tools/mint-token.py --secret "$SECRET" --sub user-42 --subs 'chat.*' --pubs 'chat.*'
  tools/mint-token.py --key private.pem --alg ES256 --kid k1 --sub user-42 --ttl 600
  tools/mint-token.py --secret "$SECRET" --sub user-42 --channel orders.eu   (channel token)"""
import argparse
import time

import jwt


def mint(key, sub=None, ttl=3600, subs=None, pubs=None, alg="HS256", kid=None, now=None,
         **claims):
    """A signed JWT: iat now, exp now + ttl, optional sub, subs, pubs and any other claims
    (channel, aud, iss, nbf...). key is the HMAC secret or a PEM private key."""
    now = int(time.time() if now is None else now)
    payload = {"iat": now, "exp": now + ttl}
    if sub is not None:
        payload["sub"] = sub
    if subs is not None:
        payload["subs"] = list(subs)
    if pubs is not None:
        payload["pubs"] = list(pubs)
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    keys = ap.add_mutually_exclusive_group(required=True)
    keys.add_argument("--secret", help="token_hmac_secret (HS256/384/512)")
    keys.add_argument("--key", help="PEM private key file (RS256/ES256)")
    ap.add_argument("--alg", default=None, help="HS256 (default with --secret), HS384, HS512, "
                    "RS256 (default with --key), ES256")
    ap.add_argument("--kid", help="key id of a token_jwks_file key")
    ap.add_argument("--sub", help="user id")
    ap.add_argument("--ttl", type=int, default=3600, help="seconds until exp")
    ap.add_argument("--subs", help="comma-separated topic patterns it may subscribe to")
    ap.add_argument("--pubs", help="comma-separated topic patterns it may publish to")
    ap.add_argument("--channel", help="make a channel token for this one topic")
    a = ap.parse_args()
    key = a.secret
    if a.key:
        with open(a.key, "rb") as f:
            key = f.read()
    alg = a.alg or ("HS256" if a.secret else "RS256")
    split = (lambda s: s.split(",") if s is not None else None)
    extra = {"channel": a.channel} if a.channel else {}
    print(mint(key, a.sub, a.ttl, split(a.subs), split(a.pubs), alg, a.kid, **extra))


if __name__ == "__main__":
    main()
