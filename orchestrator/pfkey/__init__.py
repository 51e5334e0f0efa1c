"""PF_KEY v2: the wire codec, message builders, setkey parser/formatter and client.

wire      numbers and struct layouts (RFC 2367 + KAME, NetBSD NAT-T numbering)
codec     Msg and extension dataclasses; encode()/decode() in "bsd" or "linux" flavour
messages  pure builders of requests (no socket)
client    PfkeyClient for a netkeyd control socket
setkey    setkey(8) statements -> Msg;  script: run them through a client
fmt       setkey -D / -DP output and JSON
"""

from orchestrator.pfkey.client import (
    PfkeyClient,
    PfkeyDumpIncomplete,
    PfkeyReplyError,
    PfkeyTimeout,
)
from orchestrator.pfkey.codec import Msg, decode, encode, iter_messages
from orchestrator.pfkey.setkey import SetkeyError, Statement, parse

__all__ = [
    "Msg",
    "PfkeyClient",
    "PfkeyDumpIncomplete",
    "PfkeyReplyError",
    "PfkeyTimeout",
    "SetkeyError",
    "Statement",
    "decode",
    "encode",
    "iter_messages",
    "parse",
]
