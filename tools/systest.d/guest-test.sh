#!/bin/bash
# The checks of tools/systest, run in the Debian guest by gg-systest.service
# once multi-user.target is up: install the gpugate .deb with dpkg -i and check
# the unit, the module, the CLI, a restart after kill -9, the journal fields of
# a denied knob write, and apt-get remove. One line per check on the console:
# "GG-SYSTEST ok NAME" or "GG-SYSTEST FAIL NAME: why"; "GG-SYSTEST info ..."
# lines carry times; the last line is "GG-SYSTEST-DONE rc=N".
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive
dir=/root/systest
logs=$dir/logs
mkdir -p "$logs"
ledger=/var/lib/gpugate/ledger
passed=0
failed=0
ok() {
	echo "GG-SYSTEST ok $1${2:+ ($2)}"
	passed=$((passed + 1))
}
fail() {
	echo "GG-SYSTEST FAIL $1: $2"
	failed=$((failed + 1))
}
info() { echo "GG-SYSTEST info $*"; }
# The last lines of a log, indented, after a failure.
show() { [ -s "$1" ] && tail -"${2:-15}" "$1" | sed 's/^/    | /'; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
prop() { systemctl show gpugated -p "$1" --value 2>/dev/null; }
# Every ledger record, one JSON object a line, in sequence order; complete
# lines only (the daemon may be appending one).
records() { perl -ne 'print if /\n\z/' "$ledger"/*.jsonl 2>/dev/null; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
	local limit=$1 i=0
	shift
	while ! "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -le $((limit * 2)) ] || return 1
		sleep 0.5
	done
}
running() { [ "$(prop ActiveState)/$(prop SubState)" = active/running ]; }

info "guest up: kernel $(uname -r), uptime $(uptime_s)s at the test's start, lsm $(cat /sys/kernel/security/lsm 2>/dev/null)"
info "multi-user.target reached at uptime $(awk -v u="$(systemctl show multi-user.target -p ActiveEnterTimestampMonotonic --value)" 'BEGIN { printf "%.1f", u / 1e6 }')s"

# The module, as gpugate-dkms would leave it: built by DKMS (on the host),
# in updates/dkms, loaded at boot by systemd-modules-load.
if [ -d /sys/module/gpugate ] && [ -c /dev/gpugate ]; then
	ok kmod-loaded-at-boot "$(modinfo -F filename gpugate 2>/dev/null), version $(cat /sys/module/gpugate/version 2>/dev/null || modinfo -F version gpugate 2>/dev/null)"
else
	fail kmod-loaded-at-boot "no /sys/module/gpugate or /dev/gpugate after boot ($(systemctl is-active systemd-modules-load.service))"
	journalctl -b -u systemd-modules-load.service --no-pager >"$logs/modules-load.log" 2>&1
	show "$logs/modules-load.log"
fi

# (a) dpkg -i: the postinst enables and starts the unit, and returns once the
# daemon said READY=1 (Type=notify).
t0=$(uptime_s)
if dpkg -i "$dir"/debs/gpugate_*.deb >"$logs/dpkg-i.log" 2>&1; then
	ok dpkg-install "$(dpkg-query -W -f='${Package} ${Version}' gpugate), $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s"
else
	fail dpkg-install "dpkg -i exited $?"
	show "$logs/dpkg-i.log" 30
fi
info "dpkg -i to unit state $(prop ActiveState)/$(prop SubState): $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s; daemon ready at uptime $(uptime_s)s"

if running; then
	ok unit-active "active (running), enabled: $(systemctl is-enabled gpugated 2>&1), status: $(prop StatusText)"
else
	fail unit-active "gpugated is $(prop ActiveState)/$(prop SubState), not active/running (READY=1 not sent?)"
	journalctl -b -u gpugated --no-pager >"$logs/journal-start.log" 2>&1
	show "$logs/journal-start.log" 30
fi

type=$(prop Type) nrestarts=$(prop NRestarts) watchdog=$(prop WatchdogUSec)
if [ "$type" = notify ] && [ "$nrestarts" = 0 ] && [ "$watchdog" = 30s ]; then
	ok unit-properties "Type=$type NRestarts=$nrestarts WatchdogUSec=$watchdog"
else
	fail unit-properties "Type=$type NRestarts=$nrestarts WatchdogUSec=$watchdog (want notify, 0, 30s)"
fi

# (b) gpugate status: exit 0, enforce, the module in use.
gpugate status --json >"$logs/status.json" 2>"$logs/status.err"
rc=$?
if [ "$rc" -eq 0 ] &&
	jq -e '.mode == "enforce" and .alive == true and (.kmod | type) == "object" and (.kmod.device | length) > 0' \
		"$logs/status.json" >/dev/null 2>&1; then
	ok status "$(jq -r '"mode \(.mode), engines \([.engines[] | "\(.engine):\(.mode)"] | join(",")), kmod \(.kmod.device) owns \([.kmod.owns | to_entries[] | select(.value) | .key] | join(","))"' "$logs/status.json")"
else
	fail status "gpugate status --json exited $rc; mode $(jq -r .mode "$logs/status.json" 2>/dev/null), kmod $(jq -c .kmod "$logs/status.json" 2>/dev/null) (want enforce and the module)"
	show "$logs/status.err"
fi
jq -r '.hooks[]? | select(.attached | not) | "hook not attached: \(.hook): \(.detail)"' "$logs/status.json" 2>/dev/null |
	while read -r l; do info "$l"; done
if gpugate status >"$logs/status.txt" 2>&1; then
	ok status-human "$(head -1 "$logs/status.txt")"
else
	fail status-human "gpugate status exited $?"
	show "$logs/status.txt"
fi

# (d) An unsigned write to a GPU's power knob: EPERM, the value unchanged, a
# denied record in the ledger and a journal entry with the gpugate fields.
gpu=
for d in /sys/bus/pci/devices/*; do
	case "$(cat "$d/class" 2>/dev/null)" in 0x03*) gpu=$d; break ;; esac
done
knob_seq=
if [ -z "$gpu" ]; then
	fail knob-denied "no PCI display-class device in the guest (QEMU's bochs-display and virtio-gpu-pci)"
else
	addr=$(basename "$gpu")
	info "GPU $addr: vendor $(cat "$gpu/vendor") device $(cat "$gpu/device") class $(cat "$gpu/class") driver $(basename "$(readlink "$gpu/driver" 2>/dev/null || echo none)")"
	before=$(cat "$gpu/power/control")
	err=$( { printf auto >"$gpu/power/control"; } 2>&1)
	wrc=$?
	after=$(cat "$gpu/power/control")
	if [ "$wrc" -ne 0 ] && [[ $err == *"Operation not permitted"* ]] && [ "$after" = "$before" ]; then
		ok knob-denied "write of 'auto' to $addr/power/control: EPERM, still '$after'"
	else
		fail knob-denied "write of 'auto' to $addr/power/control: exit $wrc '$err', '$before' -> '$after' (want EPERM, unchanged)"
	fi
	# remove: QEMU's display adapters have no reset method, so no reset
	# attribute (a write there fails with EACCES: sysfs creates no files).
	err=$( { printf 1 >"$gpu/remove"; } 2>&1)
	wrc=$?
	if [ "$wrc" -ne 0 ] && [[ $err == *"Operation not permitted"* ]] && [ -e "$gpu/vendor" ]; then
		ok knob-remove-denied "write of '1' to $addr/remove: EPERM, the device still there"
	else
		fail knob-remove-denied "write of '1' to $addr/remove: exit $wrc '$err', device $([ -e "$gpu/vendor" ] && echo present || echo GONE) (want EPERM, present)"
	fi
	if [ -e "$gpu/reset" ]; then
		err=$( { printf 1 >"$gpu/reset"; } 2>&1)
		wrc=$?
		if [ "$wrc" -ne 0 ] && [[ $err == *"Operation not permitted"* ]]; then
			ok knob-reset-denied "write of '1' to $addr/reset: EPERM"
		else
			fail knob-reset-denied "write of '1' to $addr/reset: exit $wrc '$err' (want EPERM)"
		fi
	else
		info "$addr has no reset attribute (QEMU gives it no reset method): its reset knob is not tested here"
	fi
	sel='select(.type != "checkpoint" and (tostring | contains("power/control")) and (tostring | contains("\"verdict\":\"denied\"")))'
	if wait_for 20 sh -c "cat $ledger/*.jsonl | jq -e -c '$sel' | grep -q ."; then
		knob_seq=$(records | jq -c "$sel" | tail -1 | jq -r .seq)
		ok knob-ledger "$(records | jq -c "$sel" | tail -1 | cut -c1-300)"
	else
		fail knob-ledger "no denied power/control record in $ledger within 20 s"
		records | tail -5 | cut -c1-400 >"$logs/ledger-tail.log"
		show "$logs/ledger-tail.log"
	fi
fi

# The journal: the denied write's entry with its fields, PRIORITY=4.
jsel='select(.GPUGATE_VERDICT == "denied" and (.GPUGATE_TYPE | length) > 0 and (.GPUGATE_SEQ | length) > 0 and (.GPUGATE_CLASS | length) > 0)'
# The power/control write's own entry, where the ledger named its seq.
[ -z "$knob_seq" ] || jsel="${jsel%)} and .GPUGATE_SEQ == \"$knob_seq\" and .GPUGATE_CLASS == \"power.off\")"
if wait_for 20 sh -c "journalctl -u gpugated -o json --no-pager | jq -e -c '$jsel' | grep -q ."; then
	e=$(journalctl -u gpugated -o json --no-pager | jq -c "$jsel" | tail -1)
	pri=$(jq -r .PRIORITY <<<"$e")
	seq=$(jq -r .GPUGATE_SEQ <<<"$e")
	if [ "$pri" = 4 ] && { [ -z "$knob_seq" ] || records | grep -q "^{\"seq\":$seq,"; }; then
		ok journal-fields "$(jq -c '{PRIORITY, GPUGATE_TYPE, GPUGATE_SEQ, GPUGATE_CLASS, GPUGATE_VERDICT, GPUGATE_COMMAND, GPUGATE_PCI, MESSAGE}' <<<"$e" | cut -c1-400)"
	else
		fail journal-fields "PRIORITY=$pri (want 4) or GPUGATE_SEQ=$seq not in the ledger: $(cut -c1-300 <<<"$e")"
	fi
else
	fail journal-fields "no journal entry of gpugated with GPUGATE_VERDICT=denied and GPUGATE_TYPE/SEQ/CLASS${knob_seq:+ (GPUGATE_SEQ=$knob_seq, GPUGATE_CLASS=power.off)} within 20 s"
	journalctl -u gpugated -o json --no-pager 2>&1 | tail -5 | cut -c1-400 >"$logs/journal-tail.log"
	show "$logs/journal-tail.log"
fi
n=$(journalctl -u gpugated -o json --no-pager | jq -c 'select(.GPUGATE_TYPE != null)' | wc -l)
info "journal: $n entries of gpugated with GPUGATE_TYPE; types: $(journalctl -u gpugated -o json --no-pager | jq -r 'select(.GPUGATE_TYPE != null) | .GPUGATE_TYPE' | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')"

# (c) kill -9 of the daemon: systemd starts a new one (Restart=always), which
# writes a gap record.
old=$(prop MainPID)
gaps_before=$(records | jq -c 'select(.type == "gap")' | wc -l)
last_seq=$(records | tail -1 | jq -r .seq)
t0=$(uptime_s)
if [ "${old:-0}" -gt 0 ] && kill -9 "$old"; then
	if wait_for 60 sh -c "p=\$(systemctl show gpugated -p MainPID --value); [ \"\$p\" -gt 0 ] && [ \"\$p\" != $old ] && [ \"\$(systemctl show gpugated -p ActiveState --value)/\$(systemctl show gpugated -p SubState --value)\" = active/running ]"; then
		ok restart-after-kill "MainPID $old -> $(prop MainPID), active (running), NRestarts=$(prop NRestarts), $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s"
	else
		fail restart-after-kill "after kill -9 $old: MainPID $(prop MainPID), $(prop ActiveState)/$(prop SubState), NRestarts=$(prop NRestarts) after 60 s"
		journalctl -b -u gpugated --no-pager >"$logs/journal-restart.log" 2>&1
		show "$logs/journal-restart.log" 20
	fi
	if [ "$(prop NRestarts)" = 1 ]; then ok restart-counted "NRestarts=1"; else fail restart-counted "NRestarts=$(prop NRestarts) (want 1)"; fi
else
	fail restart-after-kill "no MainPID to kill ($old)"
fi
gsel="select(.type == \"gap\" and .seq > ${last_seq:--1})"
if wait_for 20 sh -c "cat $ledger/*.jsonl | jq -e -c '$gsel' | grep -q ."; then
	ok ledger-gap "$(records | jq -c "$gsel" | head -1 | cut -c1-300)"
else
	fail ledger-gap "no gap record after seq $last_seq in $ledger ($gaps_before gap records before the kill)"
	records | tail -5 | cut -c1-400 >"$logs/ledger-tail2.log"
	show "$logs/ledger-tail2.log"
fi
if gpugate status --json >"$logs/status2.json" 2>&1 && jq -e '.mode == "enforce" and (.kmod | type) == "object"' "$logs/status2.json" >/dev/null; then
	ok status-after-restart "mode $(jq -r .mode "$logs/status2.json"), pid $(jq -r .pid "$logs/status2.json")"
else
	fail status-after-restart "$(head -c 300 "$logs/status2.json")"
fi

# An upgrade (dpkg -i of the package again: the postinst restarts the unit,
# never stopping it first) leaves no window: a writer hammering the power
# knob the whole time is denied every time, while the daemon is replaced.
if [ -n "$gpu" ]; then
	pid_before=$(prop MainPID)
	seq_before=$(records | tail -1 | jq -r .seq)
	: >"$logs/hammer.log"
	(
		while [ ! -e "$logs/hammer.stop" ]; do
			if { printf auto >"$gpu/power/control"; } 2>/dev/null; then echo allowed; else echo denied; fi
		done >>"$logs/hammer.log"
	) &
	hammer=$!
	wait_for 10 sh -c "[ \$(wc -l <$logs/hammer.log) -gt 0 ]"
	if dpkg -i "$dir"/debs/gpugate_*.deb >"$logs/dpkg-upgrade.log" 2>&1; then
		upgraded=yes
	else
		upgraded="dpkg -i exited $?"
	fi
	wait_for 30 running
	# keep writing until the new daemon is up and has recorded a denial
	sleep 1
	touch "$logs/hammer.stop"
	wait "$hammer"
	tries=$(wc -l <"$logs/hammer.log")
	allowed=$(grep -c allowed "$logs/hammer.log")
	pid_after=$(prop MainPID)
	if [ "$upgraded" = yes ] && [ "$allowed" -eq 0 ] && [ "$tries" -gt 0 ] && [ "$pid_after" != "$pid_before" ] && running &&
		[ "$(cat "$gpu/power/control")" = "$before" ]; then
		ok upgrade-no-window "$tries writes during the reinstall, 0 allowed; MainPID $pid_before -> $pid_after"
	else
		fail upgrade-no-window "dpkg: $upgraded; $allowed of $tries writes allowed; MainPID $pid_before -> $pid_after; $(prop ActiveState)/$(prop SubState); power/control '$(cat "$gpu/power/control")'"
		show "$logs/dpkg-upgrade.log"
	fi
	if wait_for 20 sh -c "cat $ledger/*.jsonl | jq -e -c 'select(.type == \"gap\" and .seq > $seq_before)' | grep -q ."; then
		ok upgrade-gap "the new daemon recorded the handover as a gap"
	else
		fail upgrade-gap "no gap record after seq $seq_before"
	fi
fi

# (e) apt-get remove: the unit stops, the ledger stays with its records.
nrec=$(records | wc -l)
if apt-get remove -y gpugate >"$logs/apt-remove.log" 2>&1; then
	ok apt-remove "dpkg status '$(dpkg-query -W -f='${db:Status-Abbrev}' gpugate 2>/dev/null | tr -d ' ')': removed, conffiles kept"
else
	fail apt-remove "apt-get remove -y gpugate exited $?"
	show "$logs/apt-remove.log" 20
fi
state=$(systemctl is-active gpugated 2>/dev/null)
if [ "$state" != active ] && [ "$state" != activating ] && ! pgrep -x gpugated >/dev/null && [ ! -e /usr/sbin/gpugated ]; then
	ok unit-stopped "is-active: $state, no gpugated process, /usr/sbin/gpugated gone"
else
	fail unit-stopped "is-active: $state, processes: $(pgrep -a -x gpugated | tr '\n' ' ')"
fi
nnow=$(records | wc -l)
if [ -d "$ledger" ] && [ "$nnow" -ge "$nrec" ] && [ "$nnow" -gt 0 ] && records | jq -e . >/dev/null 2>&1; then
	ok ledger-kept "$(ls "$ledger" | tr '\n' ' ')with $nnow records (before remove $nrec; last: $(records | tail -1 | jq -r .type))"
else
	fail ledger-kept "$ledger: $(ls "$ledger" 2>&1 | tr '\n' ' '), $nnow records (before remove $nrec)"
fi
if [ -d /sys/module/gpugate ]; then
	ok kmod-kept "gpugate.ko still loaded (enforcement stays)"
else
	fail kmod-kept "gpugate.ko was unloaded by apt-get remove"
fi
# Removing the package stops the recording, not the enforcement.
if [ -n "$gpu" ]; then
	err=$( { printf auto >"$gpu/power/control"; } 2>&1)
	wrc=$?
	if [ "$wrc" -ne 0 ] && [[ $err == *"Operation not permitted"* ]]; then
		ok enforcing-after-remove "write of 'auto' to $addr/power/control with no daemon: EPERM"
	else
		fail enforcing-after-remove "write with no daemon: exit $wrc '$err'"
	fi
fi

info "$passed passed, $failed failed at uptime $(uptime_s)s"
rc=0
[ "$failed" -eq 0 ] || rc=1
echo "GG-SYSTEST-DONE rc=$rc"
sync
exit "$rc"
