"""Kernel builds through the cache: builds.conf, versions, patch series, one-line errors.

Real builds of Debian's linux-source-6.1 into the shared cache ($SPDLAB_KERNEL_CACHE,
default /var/cache/spdlab/kernels): cold the first time on a machine, seconds after.
Needs `scripts/deps.sh kernel`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from leftovers import leftovers

from orchestrator.errors import ConfigError
from orchestrator.kernel import build, conf, config, tree

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
BUILDS = ("linux", "linux+loop-rewrite", "linux-canary", "linux-canary+fix")


def kernel_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "orchestrator.kernel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=3600)


def test_builds_conf_names_the_series_and_marks_the_control_synthetic():
    builds = conf.load()
    assert tuple(builds) == BUILDS
    # xfrm-census, instrumentation, comes first in every build, the baseline included
    assert {b.patches[0].name for b in builds.values()} == {"xfrm-census"}
    assert [p.name for p in builds["linux-canary+fix"].patches] == [
        "xfrm-census", "canary-flush-one", "canary-flush-one-fix",
    ]  # fmt: skip
    assert {b.name for b in builds.values() if b.synthetic} == {"linux-canary", "linux-canary+fix"}
    assert all(p.path.is_file() for b in builds.values() for p in b.patches)


def test_every_patch_applies_to_the_pristine_source_in_order(tmp_path):
    kb = conf.get("linux-canary+fix")
    src = tree.pristine(kb.source, build.cache.source_version(kb.source))
    target = tmp_path / "net" / "xfrm"
    target.mkdir(parents=True)
    (target / "xfrm_policy.c").write_bytes((src / "net/xfrm/xfrm_policy.c").read_bytes())
    census = b""
    for p in kb.patches:
        data, files = tree._check(tmp_path, p)
        assert files == ["net/xfrm/xfrm_policy.c"]
        subprocess.run(tree._argv(tmp_path), input=data, check=True, capture_output=True)
        census = census or (target / "xfrm_policy.c").read_bytes()
    # the fix undoes the control exactly: what is left is the census
    assert (target / "xfrm_policy.c").read_bytes() == census


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_build_carries_its_versions_and_is_reused(arch):
    kb = conf.get("linux-canary")
    b = build.build(kb, arch)
    m = b.meta
    assert m["source"] == "linux-source-6.1" and m["source_version"].startswith("6.1.")
    assert m["config_sha256"] == config.config_hash("spdlab", arch)
    names = ["xfrm-census", "canary-flush-one"]  # the census first in every series
    assert m["patches"] == [
        {"name": n, "sha256": hashlib.sha256((ROOT / f"kernels/patches/{n}.patch").read_bytes())
         .hexdigest()} for n in names
    ]  # fmt: skip
    assert m["image_sha256"] == hashlib.sha256(b.image.read_bytes()).hexdigest()
    assert (m["build"], m["synthetic"], m["arch"]) == ("linux-canary", True, arch)
    # all built in: no modules, SLUB (for /proc/slabinfo), PF_KEY and ESP
    dot = (b.image.parent / "config").read_text().splitlines()
    for want_line in ("CONFIG_NET_KEY=y", "CONFIG_INET_ESP=y", "CONFIG_SLUB=y",
                      "CONFIG_XFRM_USER=y", "# CONFIG_MODULES is not set"):  # fmt: skip
        assert want_line in dot, want_line
    again = build.build(kb, arch)
    assert again.image == b.image and again.meta["build_s"] == m["build_s"]  # from the cache


def test_series_after_the_stock_tree_rebuilds_incrementally():
    """A patch on top of a built tree reuses the arch's object directory."""
    for name in BUILDS:
        m = build.build(conf.get(name), "x86_64").meta
        assert m["arch"] == "x86_64"
    keys = {build.cache_key(build.versions(conf.get(n), "x86_64")) for n in BUILDS}
    assert len(keys) == len(BUILDS)
    metas = [build.build(conf.get(n), "x86_64").meta for n in BUILDS]
    assert any(m["incremental"] for m in metas)


def test_a_user_patch_outside_the_repository_builds(tmp_path):
    src = tree.pristine("linux-source-6.1", build.cache.source_version("linux-source-6.1"))
    patch = tmp_path / "mine.patch"
    patch.write_text(user_patch(src))
    r = kernel_cli("linux+mine", "--patch", str(patch), "--base", "linux", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout.splitlines()[-1])
    assert [p["name"] for p in meta["patches"]] == ["xfrm-census", "mine"]  # linux's, then mine
    assert Path(meta["path"]).is_file()


def user_patch(src: Path, marker: str = "spdlab-user-patch") -> str:
    """A patch of the user's own: af_key says so on the console when it starts."""
    old = (src / "net/key/af_key.c").read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(old) if ln.startswith("static int __init ipsec_pfkey_init"))
    # the function's opening brace and first local, then our line
    body = old[at : at + 4]
    new = [*body[:3], f'\tpr_err("{marker}: af_key starts\\n");\n', *body[3:]]
    head = f"--- a/net/key/af_key.c\n+++ b/net/key/af_key.c\n@@ -{at + 1},4 +{at + 1},5 @@\n"
    lines = [" " + ln for ln in body[:3]] + ["+" + new[3]] + [" " + ln for ln in body[3:]]
    return head + "".join(lines)


def test_a_patch_that_does_not_apply_is_one_line_naming_patch_and_hunk(tmp_path):
    bad = tmp_path / "stale.patch"
    bad.write_text(
        "--- a/net/xfrm/xfrm_policy.c\n+++ b/net/xfrm/xfrm_policy.c\n"
        "@@ -1813,3 +1813,3 @@\n-this line is not in 6.1\n+nor this one\n context\n"
    )
    r = kernel_cli("linux+stale", "--patch", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line == (
        "kernel: patch stale does not apply: net/xfrm/xfrm_policy.c hunk #1 at line 1813"
    ), line
    with pytest.raises(ConfigError, match=r"patch gone: .*No such file"):
        build.build(conf.with_patches("x", ["gone.patch"], tmp_path), "x86_64")


def test_unknown_build_and_arch_are_one_line():
    r = kernel_cli("linux-nope")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "kernel: unknown kernel build 'linux-nope'. Known builds are: " + ", ".join(BUILDS)
    )
    with pytest.raises(ConfigError, match="unknown arch 'mips'"):
        build.build(conf.get("linux"), "mips")


def test_spdlab_up_with_a_stale_user_patch_is_one_line_and_leaves_nothing():
    tmp_path = Path(tempfile.mkdtemp(prefix="spdk", dir="/tmp"))  # short socket paths
    (tmp_path / "stale.patch").write_text(
        "--- a/net/key/af_key.c\n+++ b/net/key/af_key.c\n"
        "@@ -100,2 +100,2 @@\n-not in af_key.c\n+at all\n"
    )
    (tmp_path / "lab.yaml").write_text(
        "name: k\ndefaults: {kind: qemu}\nkernels:\n  linux+stale: {patches: [stale.patch]}\n"
        "targets:\n  - {name: vm, build: linux+stale}\n"
        "scenario: {traffic: none, algorithm: aes-cbc-hmac-sha256}\n"
    )
    env = {**os.environ, "SPDLAB_RUNS_DIR": str(tmp_path / "runs")}
    cmd = [sys.executable, "-m", "orchestrator.cli.main", "up", str(tmp_path / "lab.yaml")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "spdlab: kernel linux+stale (x86_64): patch stale does not apply: "
        "net/key/af_key.c hunk #1 at line 100"
    ), r.stderr
    assert leftovers(tmp_path / "runs") == []
    shutil.rmtree(tmp_path)


def test_config_hash_follows_settings_not_comments(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "config"
    cfg.mkdir()
    shutil.copy(ROOT / "kernels/config/spdlab.config", cfg / "spdlab.config")
    shutil.copy(ROOT / "kernels/config/x86_64.config", cfg / "x86_64.config")
    monkeypatch.setattr(config, "kernels_dir", lambda: tmp_path)
    base = config.config_hash("spdlab", "x86_64")
    assert base == config.config_hash("spdlab", "x86_64")
    frag = cfg / "x86_64.config"
    frag.write_text("# a comment, and a blank line\n\n" + frag.read_text() + "\n# more\n")
    assert config.config_hash("spdlab", "x86_64") == base  # comments decide nothing
    frag.write_text(frag.read_text() + "# CONFIG_NET_KEY is not set\n")
    unset = config.config_hash("spdlab", "x86_64")
    assert unset != base  # the "is not set" form is a setting
    frag.write_text(frag.read_text() + "CONFIG_HZ_100=y\n")
    assert config.config_hash("spdlab", "x86_64") not in (base, unset)
