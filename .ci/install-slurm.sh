#!/usr/bin/env bash
# Install a single-host SLURM (slurm-wlm) plus munge from Debian's own archive.
# Idempotent: a host that already has slurmctld, slurmd, sbatch and munged is left untouched,
# so CI images that bake SLURM in pay nothing. Services are not started here: tests run
# private daemons against their own slurm.conf (see tests/slurm_cluster.py).
set -euo pipefail

have_all() {
    command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged
} >/dev/null 2>&1

if have_all; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-slurm: need root to apt-get install slurm-wlm munge" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101 stops the packages' maintainer scripts from launching the distro
# services (on hosts that have an init system); we only want the binaries.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
apt-get install -y -qq --no-install-recommends slurm-wlm munge
have_all
