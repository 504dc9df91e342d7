PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"
IFS= read -r t || exit 90
case "$t" in ''|*[!A-Za-z0-9_]*) exit 91;; esac
G=/run/nrhi-guard
grec() {
  rk=; rc=; rl=; rs=; rz=; rq=; rr=
  [ -d "$G" ] || return 0
  rr=$(grep -s -H . "$G/$t.key" "$G/$t.heal" "$G/$t.pid" 2>/dev/null </dev/null)
  while IFS= read -r rx; do case "$rx" in "$G/$t.key:"*) rk=${rx#*:};; "$G/$t.heal:"*) rx=${rx#*:}; set -f; set -- $rx; set +f; rc=$1; rl=$2; rs=$3; rz=$4;; "$G/$t.pid:"*) rq=${rx#*:};; esac; done <<EOF
$rr
EOF
  rk=${rk%% *}; rq=${rq%% *}
}
grec
if [ -n "$rk" ]; then
  a=0
  case "$rq" in ''|*[!0-9]*) ! systemctl is-active --quiet "nrhi-guard-$t.service" || a=1;; *) [ ! -d "/proc/$rq" ] || a=1;; esac
  printf "nrhi-guard %s %s %s %s %s %s\n" "${rk:-0}" "${rc:-0}" "${rl:-0}" "${rs:-starting}" "$a" "${rz:-0}"
fi 2>/dev/null
for c in sed awk sort head; do command -v $c >/dev/null 2>&1 || exec nft -j -f -; done
{ nft -j -f -; r=$?; printf '\nnrhi-rc %s\n' "$r"; } |
  LC_ALL=C sed -E -e 's/[{]"(table|chain|set|map|rule|counter|quota|limit|element|flowtable|secmark|synproxy|ct helper|ct timeout|ct expectation)": [{]"family": /\n&/g' -e 's/[{]"elem": [{]/\n&/g' |
  LC_ALL=C awk -v t="$t" 'BEGIN { ORS = ""; rc = 1; cur = ""; dyn = ""; items = 0; nd = 0; flows = 0; first = 1; raw = 0
  top = "sort -k2,2nr -k3,3nr | head -n 200" }
function num(s, key,   p, v) { p = index(s, key); if (!p) return 0; v = substr(s, p + length(key)); if (match(v, /^[0-9]+/)) return substr(v, 1, RLENGTH); return 0 }
function str(s, key,   p, v) { p = index(s, key); if (!p) return ""; v = substr(s, p + length(key)); p = index(v, "\""); return p ? substr(v, 1, p - 1) : "" }
function flush(   s, sep) {
  if (cur == "") return
  s = cur; cur = ""
  sub(/[ \t\r]+$/, "", s); sub(/,$/, "", s); sub(/[}][}][]][}]$/, "}}", s)
  if (s == "") return
  sep = items++ ? ", " : "{\"nftables\": ["
  print sep s
}
function element(s,   p, v, a, m, port, dir, fam) {
  count[dyn]++
  if (dyn !~ /^obs_/) return
  p = index(s, "\"concat\": ["); if (!p) return
  v = substr(s, p + 11); p = index(v, "]"); if (!p) return
  v = substr(v, 1, p - 1); gsub(/"/, "", v); m = split(v, a, ", ")
  if (m < 2 || m > 3 || length(a[1]) > 45 || a[1] !~ /^[0-9a-fA-F.:]+$/ || length(a[2]) > 24 || a[2] !~ /^[a-z0-9-]+$/) return
  port = "-"; if (m == 3) { if (length(a[3]) > 5 || a[3] !~ /^[0-9]+$/) return; port = a[3] }
  dir = substr(dyn, 5); fam = dir; sub(/[46].*$/, "", dir); sub(/^(in|out)/, "", fam); fam = substr(fam, 1, 1)
  flows++
  print "nrhi-flow " num(s, "\"packets\": ") " " num(s, "\"bytes\": ") " " dir " " fam " " a[1] " " a[2] " " port "\n" | top
}
/^nrhi-rc [0-9]+$/ { rc = $2; next }
/^[ \t\r]*$/ { next }
{
  line = $0
  if (first) { first = 0; if (!sub(/^[{]"nftables": [[]/, "", line)) raw = 1 }
  if (raw) { print line "\n"; next }
  if (line ~ /^[{]"[a-z ]+": [{]"family": /) {
    flush(); cur = line; dyn = ""
    if (line ~ /^[{]"set": [{]"family": "inet", /) {
      name = str(line, "\"name\": \""); tb = str(line, "\"table\": \"")
      if (tb == t && name ~ /^(obs_(in|out)[46](_other)?|owner[46](_other)?)$/ && !(name in count)) { dyn = name; count[name] = 0; size[name] = num(line, "\"size\": "); names[++nd] = name; sub(/, "elem": [[]$/, "}}", cur) }
    }
  } else if (dyn != "") element(line)
  else cur = cur line
}
END {
  flush(); if (items) print "]}\n"
  for (i = 1; i <= nd; i++) print "nrhi-dynset " names[i] " " count[names[i]] " " size[names[i]] "\n"
  fflush(); if (flows) close(top)
  exit rc
}'