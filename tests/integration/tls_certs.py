"""A test CA and server certificates made with the openssl CLI, for the TLS tests.

make(dir) writes into dir: ca.pem/ca.key (the CA), and for each name in NAMES <name>.pem and
<name>.key signed by it (EC P-256; "localhost" and "swap" cover localhost and 127.0.0.1,
"other" covers other.test, for SNI). Returns a dict name -> (cert path, key path) plus "ca".
Also runnable: python3 tls_certs.py DIR (the Node test calls it so).
"""

import os
import subprocess
import sys

NAMES = {
    "localhost": ("localhost", "DNS:localhost,IP:127.0.0.1"),
    "swap": ("localhost-reloaded", "DNS:localhost,IP:127.0.0.1"),
    "other": ("other.test", "DNS:other.test"),
}


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make(d):
    os.makedirs(d, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ringcast test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    out = {"ca": os.path.join(d, "ca.pem")}
    for name, (cn, san) in NAMES.items():
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", name + ".ext",
                 "-out", name + ".pem", cwd=d)
        out[name] = (os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"))
    return out


if __name__ == "__main__":
    make(sys.argv[1])
