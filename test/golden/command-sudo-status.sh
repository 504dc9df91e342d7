PATH="$PATH:/usr/sbin:/sbin"
IFS= read -r t || exit 90
case "$t" in ''|*[!A-Za-z0-9_]*) exit 91;; esac
G=/run/nrhi-guard
if [ -f "$G/$t.key" ]; then
  k=; c=; l=; s=; q=; a=0
  read -r k _ <"$G/$t.key"; read -r c l s _ <"$G/$t.heal"; read -r q _ <"$G/$t.pid"
  case "$q" in ''|*[!0-9]*) ! systemctl is-active --quiet "nrhi-guard-$t.service" || a=1;; *) [ ! -d "/proc/$q" ] || a=1;; esac
  printf "nrhi-guard %s %s %s %s %s\n" "${k:-0}" "${c:-0}" "${l:-0}" "${s:-starting}" "$a"
fi 2>/dev/null
exec sudo -n nft -j -f -