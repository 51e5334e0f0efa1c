"""Traffic specs: the SAs and flows a sender encrypts, as plain data."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.errors import ConfigError

Mode = Literal["tunnel", "transport"]


@dataclass(frozen=True)
class Algorithm:
    """One ESP transform: scapy's names, key sizes, and the PF_KEY numbers for it."""

    name: str
    crypt: str  # scapy CRYPT_ALGOS name
    auth: str  # scapy AUTH_ALGOS name
    enc_key_lens: tuple[int, ...]  # bytes, GCM salt included; the first is the default
    auth_key_len: int
    sadb_encrypt: int  # sadb_sa_encrypt
    sadb_auth: int  # sadb_sa_auth

    @property
    def enc_key_len(self) -> int:
        return self.enc_key_lens[0]


# Declared, not looked up: the transforms spdlab sends.
ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("aes-gcm-16", "AES-GCM", "NULL", (20, 28, 36), 0, 20, 0),
        Algorithm("aes-cbc-hmac-sha256", "AES-CBC", "SHA2-256-128", (16, 24, 32), 32, 12, 5),
        Algorithm("null-hmac-sha256", "NULL", "SHA2-256-128", (0,), 32, 11, 5),
        # Linux's af_key gives hmac(sha256) a 96-bit ICV: real kernels take this one.
        Algorithm("aes-cbc-hmac-sha512", "AES-CBC", "SHA2-512-256", (16, 24, 32), 64, 12, 7),
    )
}


def algorithm(name: str) -> Algorithm:
    """The transform called `name`.

    Raises:
        ConfigError: unknown name, listing the supported ones.
    """
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(
            f"unknown ESP algorithm '{name}'. Supported are: {', '.join(sorted(ALGORITHMS))}"
        ) from None


@dataclass(frozen=True)
class SaSpec:
    """One outbound ESP SA of the traffic host (inbound on the gateway).

    `src`/`dst` are the outer endpoints: the tunnel endpoints in tunnel mode, the hosts in
    transport mode. NAT-T ports set means UDP-encapsulated ESP (RFC 3948).
    """

    spi: int
    src: str
    dst: str
    algorithm: str
    enc_key: bytes = b""
    auth_key: bytes = b""
    mode: Mode = "tunnel"
    reqid: int = 0
    natt_sport: int | None = None
    natt_dport: int | None = None

    def __post_init__(self) -> None:
        alg = algorithm(self.algorithm)
        if not 256 <= self.spi <= 0xFFFFFFFF:
            raise ConfigError(f"SPI 0x{self.spi:x}: must be 0x100..0xffffffff")
        if len(self.enc_key) not in alg.enc_key_lens:
            sizes = "/".join(str(n) for n in alg.enc_key_lens)
            raise ConfigError(
                f"SPI 0x{self.spi:x}: {self.algorithm} needs a {sizes}-byte "
                f"encryption key, got {len(self.enc_key)}"
            )
        if len(self.auth_key) != alg.auth_key_len:
            raise ConfigError(
                f"SPI 0x{self.spi:x}: {self.algorithm} needs a {alg.auth_key_len}-byte "
                f"authentication key, got {len(self.auth_key)}"
            )
        if self.mode not in ("tunnel", "transport"):
            raise ConfigError(f"SPI 0x{self.spi:x}: mode must be tunnel or transport")
        if (self.natt_sport is None) != (self.natt_dport is None):
            raise ConfigError(f"SPI 0x{self.spi:x}: NAT-T needs both ports")
        for addr in (self.src, self.dst):
            if ipaddress.ip_address(addr).version != 4:
                raise ConfigError(f"SPI 0x{self.spi:x}: only IPv4 endpoints are sent")

    @property
    def natt(self) -> bool:
        return self.natt_sport is not None

    @property
    def key(self) -> str:
        """The SA's identity, as the gateway's SAD knows it: "DST/0xSPI"."""
        return f"{self.dst}/0x{self.spi:08x}"

    @property
    def alg(self) -> Algorithm:
        return ALGORITHMS[self.algorithm]

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["enc_key"] = self.enc_key.hex()
        d["auth_key"] = self.auth_key.hex()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SaSpec:
        d = dict(d)
        d["enc_key"] = bytes.fromhex(d.get("enc_key", ""))
        d["auth_key"] = bytes.fromhex(d.get("auth_key", ""))
        return cls(**d)


@dataclass(frozen=True)
class FlowSpec:
    """One inner flow (a 5-tuple) and the SA that carries it.

    In transport mode the inner addresses must be the SA's endpoints.
    """

    src: str
    dst: str
    sa: SaSpec
    proto: int = 17
    sport: int = 4096
    dport: int = 9
    payload_len: int = 16
    policy_id: int | None = None  # the gateway's policy it should hit, if known

    def __post_init__(self) -> None:
        if self.proto not in (6, 17):
            raise ConfigError(f"flow {self.src}->{self.dst}: proto must be 6 or 17")
        if self.sa.mode == "transport" and (self.src, self.dst) != (self.sa.src, self.sa.dst):
            raise ConfigError(
                f"flow {self.src}->{self.dst}: a transport SA carries only "
                f"{self.sa.src}->{self.sa.dst}"
            )

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "sa"}
        d["sa"] = self.sa.key
        return d


@dataclass
class TrafficSpec:
    """What one sender sends: its SAs and the flows over them."""

    sas: list[SaSpec] = field(default_factory=list)
    flows: list[FlowSpec] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sas": [s.to_json() for s in self.sas],
            "flows": [f.to_json() for f in self.flows],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrafficSpec:
        sas = [SaSpec.from_json(s) for s in d["sas"]]
        by_key = {s.key: s for s in sas}
        flows = []
        for f in d["flows"]:
            f = dict(f)
            key = f.pop("sa")
            if key not in by_key:
                raise ConfigError(f"flow {f['src']}->{f['dst']}: no SA {key}")
            flows.append(FlowSpec(sa=by_key[key], **f))
        return cls(sas, flows)

    @classmethod
    def merge(cls, specs: list[TrafficSpec]) -> TrafficSpec:
        """One spec for one sender serving several gateways.

        Raises:
            ConfigError: two different SAs with one identity (destination and SPI).
        """
        seen: dict[str, SaSpec] = {}
        out = cls()
        for spec in specs:
            for sa in spec.sas:
                if seen.setdefault(sa.key, sa) != sa:
                    raise ConfigError(f"two different SAs are both {sa.key}")
                out.sas.append(sa)
            out.flows.extend(spec.flows)
        return out
