"""Pure builders of PF_KEY requests, shaped as libipsec's pfkey_send_* build them.

No socket here: the client, the setkey parser and batch installers all share these.
seq and pid are left at 0 for whoever sends the message to fill in.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from orchestrator.pfkey import wire
from orchestrator.pfkey.codec import (
    Address,
    IpsecRequest,
    Key,
    Lifetime,
    Msg,
    NatTPort,
    NatTType,
    Policy,
    Sa,
    Sa2,
)
from orchestrator.pfkey.wire import Dir, ExtType, Mode, MsgType, PolicyType, SaType

AddressLike = str | IPv4Address | IPv6Address | IPv4Network | IPv6Network | Address


def address(
    spec: AddressLike, port: int = wire.IPSEC_PORT_ANY, proto: int = wire.IPSEC_ULPROTO_ANY
) -> Address:
    """An Address from "10.0.1.0/24", an ipaddress object or an Address (kept as is).

    Host bits are kept as given: KAME stores the selector unmasked and masks on compare.
    """
    if isinstance(spec, Address):
        return spec
    if isinstance(spec, IPv4Network | IPv6Network):
        return Address(spec.network_address, spec.prefixlen, port, proto)
    if isinstance(spec, IPv4Address | IPv6Address):
        return Address(spec, None, port, proto)
    iface = ipaddress.ip_interface(spec)
    return Address(iface.ip, iface.network.prefixlen, port, proto)


def _selector(src: AddressLike, dst: AddressLike, ul_proto: int, sport: int, dport: int) -> dict:
    return {
        ExtType.ADDRESS_SRC: _with_proto(address(src, sport), ul_proto),
        ExtType.ADDRESS_DST: _with_proto(address(dst, dport), ul_proto),
    }


def _with_proto(addr: Address, proto: int) -> Address:
    return Address(addr.ip, addr.prefixlen, addr.port, proto)


def spdadd(
    src: AddressLike,
    dst: AddressLike,
    ul_proto: int = wire.IPSEC_ULPROTO_ANY,
    dir: int = Dir.OUT,
    policy_type: int = PolicyType.IPSEC,
    requests: Iterable[IpsecRequest] = (),
    id: int = 0,
    lifetime: int = 0,
    validtime: int = 0,
    update: bool = False,
    sport: int = wire.IPSEC_PORT_ANY,
    dport: int = wire.IPSEC_PORT_ANY,
) -> Msg:
    """X_SPDADD (or X_SPDUPDATE): src, dst, [LIFETIME_HARD], X_POLICY, satype UNSPEC.

    Args:
        lifetime, validtime: seconds; sent as HARD addtime/usetime when either is set.
    """
    exts: dict = _selector(src, dst, ul_proto, sport, dport)
    if lifetime or validtime:
        exts[ExtType.LIFETIME_HARD] = Lifetime(addtime=lifetime, usetime=validtime)
    exts[ExtType.X_POLICY] = Policy(policy_type, dir, id, list(requests))
    return Msg(MsgType.X_SPDUPDATE if update else MsgType.X_SPDADD, exts=exts)


def spddelete(
    src: AddressLike,
    dst: AddressLike,
    ul_proto: int = wire.IPSEC_ULPROTO_ANY,
    dir: int = Dir.OUT,
    sport: int = wire.IPSEC_PORT_ANY,
    dport: int = wire.IPSEC_PORT_ANY,
    policy_type: int = PolicyType.DISCARD,
) -> Msg:
    """X_SPDDELETE by selector and direction; the kernel ignores the policy type."""
    exts: dict = _selector(src, dst, ul_proto, sport, dport)
    exts[ExtType.X_POLICY] = Policy(policy_type, dir)
    return Msg(MsgType.X_SPDDELETE, exts=exts)


def _policy_id(id: int) -> Policy:
    # KAME's SPDDELETE2 and SPDGET read only sadb_x_policy_id.
    return Policy(PolicyType.DISCARD, Dir.ANY, id)


def spddelete2(id: int) -> Msg:
    """X_SPDDELETE2: a policy extension carrying only the id."""
    return Msg(MsgType.X_SPDDELETE2, exts={ExtType.X_POLICY: _policy_id(id)})


def spdget(id: int) -> Msg:
    """X_SPDGET by id."""
    return Msg(MsgType.X_SPDGET, exts={ExtType.X_POLICY: _policy_id(id)})


def spdflush() -> Msg:
    """X_SPDFLUSH: the bare 16-byte header, the only length KAME accepts."""
    return Msg(MsgType.X_SPDFLUSH)


def spddump() -> Msg:
    """X_SPDDUMP: the bare header."""
    return Msg(MsgType.X_SPDDUMP)


def register(satype: int = SaType.ESP) -> Msg:
    """REGISTER for one SA type; the reply lists the supported algorithms."""
    return Msg(MsgType.REGISTER, satype=satype)


def add_sa(
    src: AddressLike,
    dst: AddressLike,
    spi: int,
    *,
    satype: int = SaType.ESP,
    mode: int = Mode.ANY,
    reqid: int = 0,
    encrypt: int = wire.EncAlg.NONE,
    enc_key: bytes = b"",
    auth: int = wire.AuthAlg.NONE,
    auth_key: bytes = b"",
    replay: int = 0,
    flags: int = 0,
    hard: Lifetime | None = None,
    soft: Lifetime | None = None,
    natt_type: int = 0,
    natt_sport: int = 0,
    natt_dport: int = 0,
    update: bool = False,
) -> Msg:
    """ADD (or UPDATE): SA, SA2, src, dst, keys, lifetimes, then NAT-T extensions.

    Keys go in only when non-empty (`-E null` has none); NAT-T ones only with natt_type.
    """
    exts: dict = {
        ExtType.SA: Sa(spi, replay, wire.SaState.LARVAL, auth, encrypt, flags),
        ExtType.X_SA2: Sa2(mode, 0, reqid),
        **_selector(src, dst, wire.IPSEC_ULPROTO_ANY, 0, 0),
    }
    if enc_key:
        exts[ExtType.KEY_ENCRYPT] = Key(enc_key)
    if auth_key:
        exts[ExtType.KEY_AUTH] = Key(auth_key)
    if hard is not None:
        exts[ExtType.LIFETIME_HARD] = hard
    if soft is not None:
        exts[ExtType.LIFETIME_SOFT] = soft
    if natt_type:
        exts[ExtType.X_NAT_T_TYPE] = NatTType(natt_type)
        exts[ExtType.X_NAT_T_SPORT] = NatTPort(natt_sport)
        exts[ExtType.X_NAT_T_DPORT] = NatTPort(natt_dport)
    return Msg(MsgType.UPDATE if update else MsgType.ADD, satype=satype, exts=exts)


def update_sa(src: AddressLike, dst: AddressLike, spi: int, **kwargs: Any) -> Msg:
    """UPDATE: add_sa()'s message, same keyword arguments, with the UPDATE type."""
    return dataclasses.replace(add_sa(src, dst, spi, **kwargs), type=MsgType.UPDATE)


def _sa_by_spi(mtype: int, src: AddressLike, dst: AddressLike, spi: int, satype: int) -> Msg:
    exts: dict = {ExtType.SA: Sa(spi), **_selector(src, dst, wire.IPSEC_ULPROTO_ANY, 0, 0)}
    return Msg(mtype, satype=satype, exts=exts)


def delete_sa(src: AddressLike, dst: AddressLike, spi: int, satype: int = SaType.ESP) -> Msg:
    """DELETE one SA by src, dst and SPI."""
    return _sa_by_spi(MsgType.DELETE, src, dst, spi, satype)


def get_sa(src: AddressLike, dst: AddressLike, spi: int, satype: int = SaType.ESP) -> Msg:
    """GET one SA by src, dst and SPI."""
    return _sa_by_spi(MsgType.GET, src, dst, spi, satype)


def deleteall_sa(src: AddressLike, dst: AddressLike, satype: int = SaType.ESP) -> Msg:
    """DELETE without an SA extension: every SA between src and dst (KAME key_delete_all)."""
    exts: dict = _selector(src, dst, wire.IPSEC_ULPROTO_ANY, 0, 0)
    return Msg(MsgType.DELETE, satype=satype, exts=exts)


def flush_sa(satype: int = SaType.UNSPEC) -> Msg:
    """FLUSH: UNSPEC flushes every SA type."""
    return Msg(MsgType.FLUSH, satype=satype)


def dump_sa(satype: int = SaType.UNSPEC) -> Msg:
    """DUMP: UNSPEC dumps every SA type."""
    return Msg(MsgType.DUMP, satype=satype)
