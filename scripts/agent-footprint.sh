#!/usr/bin/env bash
# Footprint of a running agent (DESIGN §7: ≤ 25 MB RSS, ≤ 2% of a core probing 3 lines).
#
# Builds a site namespace with 3 WAN lines (veth) to a far namespace running a STAMP
# reflector, and a LAN namespace behind the site; starts
#   wansteer agent --policy P --site branch-1 --netns SITE --lan lan0 --metrics 127.0.0.1:19465
# waits WARMUP seconds, then samples the agent's RSS (VmRSS, VmHWM) and CPU time
# (utime+stime from /proc/PID/stat) over SECONDS. With LAN_PPS > 0 the LAN host sends that
# many UDP datagrams per second through the site (new flow every 10) during the sample, so
# capture and classification are part of the figure. Needs root.
#
#   scripts/agent-footprint.sh [SECONDS] [LAN_PPS]
# AGENT (default `target/release/wansteer agent`) is the measured command; REFLECT (default
# `target/release/wansteer probe reflect`) answers the probes at the far end (not measured).
# The agent alone: AGENT=target/release/examples/agent_daemon (see agent/examples/agent_daemon.rs).
set -euo pipefail
AGENT_CMD=${AGENT:-target/release/wansteer agent}
REFLECT_CMD=${REFLECT:-target/release/wansteer probe reflect}
SECONDS_TO_SAMPLE=${1:-60}
LAN_PPS=${2:-0}
WARMUP=${WARMUP:-10}
TAG=$(( $$ % 100000 ))
SITE=wstfS$TAG FAR=wstfF$TAG LAN=wstfL$TAG
DIR=$(mktemp -d)
AGENT=""
REFLECTOR=""
SENDER=""

cleanup() {
  for pid in $SENDER $AGENT $REFLECTOR; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in $SITE $FAR $LAN; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT

for ns in $SITE $FAR $LAN; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 net.ipv6.conf.all.disable_ipv6=1
done
ip netns exec "$SITE" sysctl -qw net.ipv4.ip_forward=1
for i in 0 1 2; do
  ip -n "$SITE" link add "wan$i" type veth peer name "w$i" netns "$FAR"
  ip -n "$SITE" addr add "10.100.$((i + 1)).2/24" dev "wan$i"
  ip -n "$FAR" addr add "10.100.$((i + 1)).1/24" dev "w$i"
  ip -n "$SITE" link set "wan$i" up
  ip -n "$FAR" link set "w$i" up
done
ip -n "$SITE" link add lan0 type veth peer name l0 netns "$LAN"
ip -n "$SITE" addr add 10.1.0.1/24 dev lan0
ip -n "$LAN" addr add 10.1.0.2/24 dev l0
ip -n "$SITE" link set lan0 up
ip -n "$LAN" link set l0 up
ip -n "$LAN" route add default via 10.1.0.1
ip -n "$FAR" addr add 10.200.0.1/32 dev lo
ip -n "$FAR" route add 10.1.0.0/24 via 10.100.1.2
ip -n "$SITE" route add 10.200.0.0/24 via 10.100.1.1

cat > "$DIR/policy.yaml" <<'EOF'
sites:
  - name: branch-1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 10.100.1.1, up: 50mbit, down: 50mbit, preference: 1 }
      - { name: inet, transport: internet, interface: wan1, gateway: 10.100.2.1, up: 20mbit, down: 20mbit, preference: 2 }
      - { name: lte, transport: lte, interface: wan2, gateway: 10.100.3.1, up: 10mbit, down: 10mbit, preference: 3 }
  - name: dc
    kind: dc
    lan: [10.200.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: eth0, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }]
  - name: meetings
    priority: 3
    dscp: AF41
    match: [{ apps: [teams, zoom, webex] }]
  - name: default
    priority: 7
EOF

# shellcheck disable=SC2086
ip netns exec "$FAR" $REFLECT_CMD --listen 0.0.0.0:862 >/dev/null 2>&1 &
REFLECTOR=$!
# shellcheck disable=SC2086
$AGENT_CMD --policy "$DIR/policy.yaml" --site branch-1 --netns "$SITE" --lan lan0 \
  --metrics 127.0.0.1:19465 >"$DIR/agent.log" 2>&1 &
AGENT=$!
sleep "$WARMUP"
kill -0 "$AGENT" || { cat "$DIR/agent.log"; exit 1; }

if [ "$LAN_PPS" -gt 0 ]; then
  ip netns exec "$LAN" python3 - "$LAN_PPS" "$((SECONDS_TO_SAMPLE + 5))" <<'EOF' &
import socket, sys, time
pps, duration = int(sys.argv[1]), float(sys.argv[2])
end, n, sock = time.time() + duration, 0, None
while time.time() < end:
    if n % 10 == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(b"x" * 200, ("10.200.0.1", 5000 + n % 1000))
    n += 1
    time.sleep(1.0 / pps)
EOF
  SENDER=$!
fi

ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
HZ=$(getconf CLK_TCK)
t0=$(ticks); s0=$(date +%s.%N)
sleep "$SECONDS_TO_SAMPLE"
t1=$(ticks); s1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
packets=$(ip netns exec "$SITE" curl -s http://127.0.0.1:19465/metrics | awk '/^wansteer_agent_classifier_packets_total/ {print $2}')
awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$HZ" -v rss="$rss" -v hwm="$hwm" \
  -v pps="$LAN_PPS" -v pk="${packets:-0}" 'BEGIN {
  printf "lines=3 lan_pps=%d sample=%.0fs cpu=%.2f%% of a core rss=%.1f MiB peak_rss=%.1f MiB classified_packets=%d\n",
    pps, s1 - s0, 100 * (t1 - t0) / hz / (s1 - s0), rss / 1024, hwm / 1024, pk }'
