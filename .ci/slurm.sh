#!/usr/bin/env bash
# Start a single-node SLURM (Debian's slurmctld, slurmd, munge) on this machine for the SLURM tests.
#
# Installs the packages when missing, writes /etc/slurm/slurm.conf from `slurmd -C`, starts munged,
# slurmctld and slurmd in that order, and waits until the node is idle. Safe to run again while SLURM is
# up. Exits non-zero, with the daemons' log tails, when SLURM does not come up.
# The configuration and its pitfalls: ../shared/ENVIRONMENT.md ("A single-node SLURM").
set -euo pipefail

SPOOL=/var/spool/slurm-ci
CONF=/etc/slurm/slurm.conf
WAIT_S=${SLURM_CI_WAIT_S:-60}

say() { echo "slurm.sh: $*" >&2; }

die() {
    say "FAILED: $*"
    for log in "$SPOOL/log/slurmctld.log" "$SPOOL/log/slurmd.log"; do
        if [ -f "$log" ]; then
            echo "---- last lines of $log" >&2
            tail -n 20 "$log" >&2
        fi
    done
    exit 1
}

install_packages() {
    local packages=(slurmctld slurmd slurm-client munge)
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    say "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
    if ! "${apt[@]}" install --no-install-recommends "${packages[@]}" >/tmp/slurm-ci-apt.log 2>&1; then
        "${apt[@]}" update >>/tmp/slurm-ci-apt.log 2>&1 || true
        "${apt[@]}" install --no-install-recommends "${packages[@]}" >>/tmp/slurm-ci-apt.log 2>&1 \
            || { tail -n 20 /tmp/slurm-ci-apt.log >&2; die "apt-get install ${packages[*]}"; }
    fi
}

# the controller is reached by the hostname, which must resolve to 127.0.0.1 (ENVIRONMENT.md)
ensure_hostname() {
    HOST=$(hostname)
    if ! awk -v h="$HOST" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == h) found = 1 } END { exit !found }' /etc/hosts; then
        say "adding $HOST to /etc/hosts as 127.0.0.1"
        echo "127.0.0.1 $HOST" >>/etc/hosts
    fi
}

write_conf() {
    # first line of `slurmd -C`: NodeName=... CPUs=... Boards=... ... RealMemory=...
    local node topology memory
    node=$(slurmd -C | head -n 1)
    [ -n "$node" ] || die "slurmd -C printed nothing"
    topology=$(tr ' ' '\n' <<<"$node" | grep -Ev '^(NodeName|RealMemory)=' | grep . | tr '\n' ' ')
    memory=$(tr ' ' '\n' <<<"$node" | sed -n 's/^RealMemory=//p')
    # a little under the machine's memory, or slurmd registers the node as invalid
    memory=$((memory * 95 / 100))
    mkdir -p /etc/slurm "$SPOOL"/{ctld,d,run,log}
    chown -R slurm: "$SPOOL"
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# written by .ci/slurm.sh: a single-node SLURM for the harness's tests
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$SPOOL/run/slurmctld.pid
SlurmdPidFile=$SPOOL/run/slurmd.pid
SlurmctldLogFile=$SPOOL/log/slurmctld.log
SlurmdLogFile=$SPOOL/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# schedule every 2 s: a dependent job starts soon after its dependency ends
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
# a requeued job may start again cred_expire+1 s after its requeue (ENVIRONMENT.md measured 10; 5 works too)
AuthInfo=cred_expire=5
KillWait=5
MinJobAge=3600
NodeName=$HOST NodeAddr=127.0.0.1 ${topology}RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        CONF_CHANGED=0
    else
        install -m 0644 "$tmp" "$CONF"
        rm -f "$tmp"
        CONF_CHANGED=1
    fi
}

# a daemon is running when its pid file names a live process of that name
running() {
    local name=$1 pidfile=$2 pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    mkdir -p /run/munge
    chown munge: /run/munge
    runuser -u munge -- munged --force
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged does not answer"
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ $SECONDS -lt $deadline ] || die "$what (waited ${seconds}s)"
        sleep 0.5
    done
}

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() { sinfo -h -o %t 2>/dev/null | head -n 1; }

# idle when nothing runs; mix/alloc when jobs already run on a SLURM started earlier
node_ready() {
    case "$(node_state)" in
        idle | mix | alloc) return 0 ;;
        *) return 1 ;;
    esac
}

start_slurm() {
    if running slurmctld "$SPOOL/run/slurmctld.pid"; then
        if [ "$CONF_CHANGED" = 1 ]; then
            say "configuration changed: scontrol reconfigure"
            scontrol reconfigure || die "scontrol reconfigure"
        fi
    else
        slurmctld || die "slurmctld did not start"
    fi
    wait_for "slurmctld answering scontrol ping" 30 ctld_up
    if ! running slurmd "$SPOOL/run/slurmd.pid"; then
        slurmd || die "slurmd did not start"
    fi
    local deadline=$((SECONDS + WAIT_S)) resumed=0
    until node_ready; do
        case "$(node_state)" in
            down* | drain* | drng*)
                # a node left down by an earlier, stopped slurmd
                if [ $resumed = 0 ]; then
                    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        [ $SECONDS -lt $deadline ] || die "node not idle after ${WAIT_S}s (sinfo says '$(node_state)')"
        sleep 0.5
    done
}

main() {
    [ "$(id -u)" = 0 ] || die "must run as root (installs packages and starts daemons)"
    install_packages
    ensure_hostname
    write_conf
    start_munge
    start_slurm
    say "SLURM is up: node $HOST is $(node_state), partition debug"
}

main "$@"
