"""``tickstream token SUB [--role R ...] [--ttl 1h]``: mint a JWT a gateway with the same key accepts.

The key is the gateways' own: ``JWT_SECRET`` (HS256), or ``JWT_PRIVATE_KEY``, the private half
of their ``JWT_PUBLIC_KEY`` (RS256 for an RSA key, ES256 for an EC P-256 key). ``JWT_AUDIENCE``
and ``JWT_ISSUER``, when the gateways require them, become the ``aud`` and ``iss`` claims. With
none of these set, the secret of the running ``tickstream up`` is used (:mod:`tickstream.stackfile`).
The claims are ``sub``, ``roles`` (a list, possibly empty), ``iat`` and ``exp``. Only the token
is printed on stdout, so that ``TOKEN=$(tickstream token alice)`` works.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError
from shared.settings import Secret, setting

_TTL = re.compile(r"([1-9][0-9]{0,6})(s|m|h|d)", re.ASCII)
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = 365 * 86400
_ROLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}", re.ASCII)
MAX_ROLES = 32


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """The signing key and the claims the gateways require."""

    jwt_secret: Secret = setting(Secret(""), env="JWT_SECRET",
                                 help="HS256 secret: the gateways' JWT_SECRET")
    jwt_private_key: Secret = setting(
        Secret(""), env="JWT_PRIVATE_KEY", metavar="PEM",
        help="PEM private key (or @path to one) for RS256 (RSA) or ES256 (EC P-256) tokens: the "
             "private half of the gateways' JWT_PUBLIC_KEY",
    )
    jwt_audience: str = setting("", env="JWT_AUDIENCE", help="the 'aud' claim: the gateways' JWT_AUDIENCE")
    jwt_issuer: str = setting("", env="JWT_ISSUER", help="the 'iss' claim: the gateways' JWT_ISSUER")

    def __post_init__(self) -> None:
        if self.jwt_secret and self.jwt_private_key:
            raise ValueError("set JWT_SECRET or JWT_PRIVATE_KEY, not both")


def parse_ttl(text: str) -> int:
    """``30s``, ``15m``, ``1h``, ``7d`` -> seconds, from 1 s to 365 days."""
    match = _TTL.fullmatch(text)
    if not match:
        raise ConfigError(f"--ttl: expected a whole number and a unit (s, m, h or d), such as 30s, "
                          f"15m, 1h or 7d, got {text[:40]!r}")
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    if seconds > MAX_TTL:
        raise ConfigError(f"--ttl: at most 365d, got {text}")
    return seconds


def check_claims(sub: str, roles: list[str]) -> list[str]:
    """The roles, deduplicated in order; ConfigError (one line) for a bad SUB or role."""
    from shared.events import is_user

    if not is_user(sub):
        raise ConfigError("SUB: a user id of 1 to 256 characters, none of them a control character")
    unique = list(dict.fromkeys(roles))
    if len(unique) > MAX_ROLES:
        raise ConfigError(f"--role: at most {MAX_ROLES} roles")
    for role in unique:
        if not _ROLE.fullmatch(role):
            raise ConfigError(f"--role {role[:70]!r}: 1 to 64 letters, digits, '_', '.', ':' or '-', "
                              "starting with a letter or digit")
    return unique


def _private_key(text: str) -> tuple[object, str]:
    """The key object and its algorithm (RS256 or ES256)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if text.startswith("@"):
        try:
            with open(text[1:], "rb") as handle:
                pem = handle.read(1024 * 1024)
        except OSError as exc:
            raise ConfigError(f"JWT_PRIVATE_KEY: cannot read {text[1:]}: {exc.strerror}") from None
    else:
        pem = text.replace("\\n", "\n").encode()
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"JWT_PRIVATE_KEY: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ConfigError("JWT_PRIVATE_KEY: expected an RSA key (RS256) or an EC P-256 key (ES256)")


def mint(settings: TokenSettings, sub: str, roles: list[str], ttl: int, now: float | None = None) -> str:
    """A signed token for ``sub`` with ``roles``, valid for ``ttl`` seconds from ``now``."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": sub, "roles": roles, "iat": issued, "exp": issued + ttl}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_secret:
        return jwt.encode(claims, settings.jwt_secret.reveal(), algorithm="HS256")
    if settings.jwt_private_key:
        key, algorithm = _private_key(settings.jwt_private_key.reveal())
        return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]
    raise ConfigError("no signing key: set JWT_SECRET (HS256) or JWT_PRIVATE_KEY (RS256/ES256), or "
                      "start `tickstream up` in this folder (it keeps one in .state)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from shared.settings import add_arguments

    parser.description = ("Mint a JWT for SUB, signed with the gateways' key, and print it: "
                          "TOKEN=$(tickstream token alice --role publisher)")
    parser.add_argument("sub", metavar="SUB", help="the user id (the 'sub' claim), e.g. alice")
    parser.add_argument("--role", action="append", default=[], metavar="ROLE", dest="roles",
                        help="a role to grant, e.g. publisher or admin (repeatable)")
    parser.add_argument("--ttl", default="1h", metavar="DURATION",
                        help="how long the token is valid: 30s, 15m, 1h, 7d ... up to 365d "
                             "(default: 1h)")
    add_arguments(parser, TokenSettings)


def run(args: argparse.Namespace) -> int:
    from shared.settings import from_args
    from tickstream import stackfile

    roles = check_claims(args.sub, args.roles)
    ttl = parse_ttl(args.ttl)
    has_key = (args.jwt_secret is not None or args.jwt_private_key is not None
               or "JWT_PRIVATE_KEY" in os.environ)
    # The stack's audience and issuer go with the stack's key: a key given here is for another
    # deployment, whose gateways would refuse claims they were not configured for.
    wanted = {"JWT_SECRET": has_key,
              "JWT_AUDIENCE": has_key or args.jwt_audience is not None,
              "JWT_ISSUER": has_key or args.jwt_issuer is not None}
    found = stackfile.resolve("token", wanted)
    overrides: dict[str, Any] = {name.lower(): Secret(v) if name == "JWT_SECRET" else v
                                 for name, v in found.items()}
    settings = from_args(TokenSettings, args, os.environ, **overrides)
    print(mint(settings, args.sub, roles, ttl))
    return 0
