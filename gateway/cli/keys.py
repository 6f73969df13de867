"""``keys generate|jwks|rotate``: the gateway's signing keys."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import orjson

from gateway.cli.common import load_settings
from gateway.crypto import keys


def cmd_keys_generate(args: argparse.Namespace) -> int:
    key = keys.generate(args.alg)
    out = Path(args.out)
    public = out.with_suffix(".pub.pem")
    for path in (out, public):
        if path.exists():
            print(f"{path} exists; refusing to overwrite a key", file=sys.stderr)
            return 2
    try:  # the private key is never readable by others, not even while it is written
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(keys.private_pem(key))
        public.write_bytes(keys.public_pem(key.public))
    except OSError as exc:
        print(f"cannot write the key to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"private key: {out}\npublic key: {public}\nkid: {key.kid}")
    return 0


def cmd_keys_jwks(args: argparse.Namespace) -> int:
    from gateway.audit.heads import tree_head_keys
    from gateway.crypto.keyring import load_signing_keys

    settings = load_settings(args)
    _active, published = load_signing_keys(settings)
    document = keys.jwks(published)
    if args.all:  # for an export's verifier: every key that signed (or signs) tree heads, retired ones included
        listed = {k["kid"] for k in document["keys"]}
        document["keys"] += [keys.published_jwk(public, kid) for kid, public in tree_head_keys(settings).items()
                             if kid not in listed]
    print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from gateway.crypto.keyring import GatewaySigningKeys

    settings = load_settings(args)
    source = GatewaySigningKeys(settings)
    if source.store is None:
        print(f"the signing key is the configured file {settings.signing_key_file}: rotate it in the "
              "configuration (new `signing_key_file`, the old one under `previous_signing_key_files`)",
              file=sys.stderr)
        return 2
    rotation = source.store.rotate_detailed(args.alg)
    overlap = timedelta(seconds=round(source.overlap_s))
    print(f"old kid: {rotation.previous}\nnew kid: {rotation.key.kid} ({rotation.key.alg})\n"
          f"overlap: {overlap} (the old key stays in the JWKS until "
          f"{rotation.previous_published_until.isoformat(timespec='seconds')})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    g = k.add_parser("generate", help="generate a private key (PEM) and its public key")
    g.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA")
    g.add_argument("--out", required=True)
    g.set_defaults(func=cmd_keys_generate)
    j = k.add_parser("jwks", help="print the gateway's public JWKS: the active key and retired keys still in overlap")
    j.add_argument("--all", action="store_true",
                   help="also every retired key that signed tree heads: the JWKS to hand over with an export")
    j.set_defaults(func=cmd_keys_jwks)
    r = k.add_parser("rotate", help="make a new signing key active; the old one stays published for the overlap",
                     description="Rotate the signing key of the key store under state_dir/keys. A running "
                                 "gateway picks it up within a second. Not for a configured signing_key_file.")
    r.add_argument("--alg", choices=["EdDSA", "ES256"], default="EdDSA")
    r.set_defaults(func=cmd_keys_rotate)
